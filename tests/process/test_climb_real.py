"""The climb on a real program nobody here wrote: CPython's cyclic garbage collector.

Debian's ``python3.11`` (an ``-O2`` LTO build, symbols only in the detached
debug file of ``python3.11-dbg``, found by build-id) runs a loop whose cost is
made by a chain of calls: ``gc.collect()`` -> ``gc_collect_main`` ->
``deduce_unreachable`` -> the ``tp_traverse`` of every container (a heap of
100 000 lists, so ``list_traverse`` is the hot leaf).  The symptom is the
loop's rate.  The climb must name the collection itself -- not the leaf
below it (whose cut only moves the heat) and not the interpreter's main loop.
Why this program: its cost chain is documented, deep, and built the way
production binaries are (LTO renames static functions, frames are inlined).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from knockout.measure import Metric
from knockout.search.climb import ClimbConfig, climb
from knockout.targets.launched import Launched
from knockout.trial import TrialConfig

PYTHON = Path("/usr/bin/python3.11")
LOOP = """
import gc, os, sys, time
keep = [[i] for i in range(100000)]
out, n, t0 = sys.argv[1], 0, time.monotonic()
while True:
    gc.collect()
    n += 1
    t = time.monotonic()
    if t - t0 >= 0.25:
        with open(out + ".tmp", "w") as f:
            f.write(f"{n / (t - t0):.2f}\\n")
        os.replace(out + ".tmp", out)
        n, t0 = 0, t
"""


def test_climb_names_the_collection_not_the_traversal_leaf_nor_the_main_loop(
    tmp_path: Path,
) -> None:
    if not PYTHON.exists() or shutil.which("perf") is None:
        pytest.fail("needs Debian's python3.11 and perf (make setup installs them)")
    script, rate = tmp_path / "loop.py", tmp_path / "rate"
    script.write_text(LOOP)
    launched = Launched(f"{PYTHON} {script} {rate}", wait=1.5)
    try:
        config = ClimbConfig(
            trial=TrialConfig(window=0.5, settle=0.2, profile=False),
            profile_seconds=2.0,
            max_frames=3,
            count_seconds=1.0,
        )
        symptom = Metric(f"cat {rate}", higher_is_better=True)
        result = climb(launched.target, symptom, config, restart=launched.restart)
    finally:
        launched.close()
    lines = "\n".join(f.line() for f in result.frames)
    culprit = result.culprit
    assert culprit is not None, f"{result.conclusion()}\n{lines}"
    assert culprit.frame.symbol.startswith("gc_collect_main"), lines
    leaf = result.frames[0]
    assert leaf.frame.symbol.startswith("list_traverse") and leaf.verdict != "gone", lines
    assert not any(
        f.frame.symbol == "_PyEval_EvalFrameDefault" and f.verdict == "gone" for f in result.frames
    )
    # the cost split: one collection walks the whole heap (a traverse call per container)
    deduce = next(f for f in result.frames if f.frame.symbol == "deduce_unreachable")
    assert deduce.fanout and max(deduce.fanout.values()) > 25_000, (
        deduce.fanout,
        deduce.calls_per_s,
        deduce.count_note,
        result.notes,
    )
