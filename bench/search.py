#!/usr/bin/env python3
"""Bench: the search on planted programs -- bisect against trying every point, and climb.

The programs are the tests' generators (tests/process/planted_chain.py),
built ``gcc -O2 -g -fomit-frame-pointer`` and run on the host under ptrace
(as root), one seed per program:

* **bisect** (``branchy_source``): the cost sits behind a branch in one
  statement in the middle of a long function (24 steps, ~80 points;
  ``--statements 40`` is the test's, ~130 points).  ``knockout bisect``
  (probabilistic bisection over the "return at P" points) is timed against
  **the seed's method**, one trial per "return at P" point, every point of
  the function in program order.  The exhaustive answer is the boundary that
  fits its verdicts best (fewest verdicts on the wrong side; ``inconclusive``
  and ``breaks`` say nothing), read into a region the same way as the
  bisect's.  Both are right when their region's source lines hold the costly
  statement (``if (key == 'r') acc += costly(acc);``, two lines).  The figures
  also give what a linear scan from the entry that stops at the first point
  whose cut does not remove the symptom would have cost (its first
  ``boundary + 1`` trials of the exhaustive run).  The exhaustive run is
  slow (one trial per point: 5-9 s each here, ~14 minutes for the test's
  40-step function), so by default it runs on the first bisect seed only
  (``--exhaustive-seeds``).
* **climb** (``chain_source``): a chain of 3-8 frames with random names,
  one of which loops until the frames below report progress (cutting a leaf
  only moves the heat).  ``knockout climb`` profiles the server (driven by a
  client every 20 ms), counts calls for the cost split and cuts frames from
  the leaf up; it is right when it names the planted culprit.

Trials are the tests' (0.3 s windows, 0.05 s settle; the symptom is the wall
time of a client making 10 requests).  Wall time is the machine's clock on
this host, which other work shares: the load averages before and after are
recorded with it.

Writes bench/out/search.json and prints the same JSON.  The default run
(3 bisect seeds, 1 exhaustive, 3 climb seeds) takes about 15 minutes on a
2-core machine; ``--bisect-seeds N --exhaustive-seeds N --climb-seeds N``
for more, ``--statements N`` for a longer function.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.measure import CommandTime, perf_problem  # noqa: E402
from knockout.search.bisect import (  # noqa: E402
    Answer,
    BisectConfig,
    BisectResult,
    Found,
    Probe,
    answer_of,
    bisect,
)
from knockout.search.candidates import return_points  # noqa: E402
from knockout.search.climb import ClimbConfig, FrameResult, climb  # noqa: E402
from knockout.targets.process import ProcessTarget  # noqa: E402
from knockout.trial import TrialConfig, run_trial  # noqa: E402
from tests.process.planted_chain import branchy_source, chain_source  # noqa: E402

OUT = ROOT / "bench" / "out" / "search.json"
CFLAGS = ("-O2", "-g", "-fomit-frame-pointer")
TRIAL = TrialConfig(window=0.3, settle=0.05, profile=False)
BISECT = BisectConfig(trial=TRIAL)
CLIMB = ClimbConfig(trial=TrialConfig(window=0.3, profile=True, settle=0.05), profile_seconds=2.0)
BISECT_FIRST_SEED = 3  # the test's seed (tests/process/test_bisect.py), then 4, 5, ...
#: steps of the bisected function: 24 give ~80 points (the test's 40 give ~130, and one trial
#: per point then takes ~14 minutes alone on this machine)
STATEMENTS = 24
CLIMB_FIRST_SEED = 11  # the test's seed (tests/process/test_climb.py), then 12, 13, ...


def say(text: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(text, file=sys.stderr, flush=True)


def build(source: str, directory: Path) -> Path:
    (directory / "p.c").write_text(source)
    binary = directory / "p"
    subprocess.run(["gcc", *CFLAGS, "-o", str(binary), str(directory / "p.c")], check=True)
    return binary


@contextmanager
def server(binary: Path, sock: Path, hammer_ms: int | None = None) -> Iterator[int]:
    """The program's server (and a client every ``hammer_ms``, for a profile): its pid."""
    proc = subprocess.Popen([str(binary), "server", str(sock)], stdout=subprocess.PIPE, text=True)
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        if hammer_ms is not None:
            helpers.append(subprocess.Popen([str(binary), "hammer", str(sock), str(hammer_ms)]))
        yield proc.pid
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
        proc.kill()
        proc.wait()


def lines_hit(result: BisectResult, cost_line: int) -> bool:
    """The region's source lines hold the costly statement (``if`` line or the call's)."""
    lines = {int(where.rsplit(":", 1)[1]) for where in result.lines()}
    return bool(lines & {cost_line - 1, cost_line})


def best_boundary(answers: Sequence[Answer]) -> tuple[int, int]:
    """The boundary b (points < b remove, points >= b do not) with fewest disagreeing verdicts.

    >>> best_boundary([Answer(True, 0.01), Answer(True, 0.01), Answer(False, 0.05)])
    (2, 0)
    >>> best_boundary([Answer(True, 0.01), Answer(False, 0.05), Answer(True, 0.01),
    ...                Answer(False, 0.05), Answer(None, 0.5)])
    (1, 1)
    """
    best, wrong_best = 0, len(answers) + 1
    for b in range(len(answers) + 1):
        wrong = sum(
            1 for k, a in enumerate(answers) if a.removes is not None and a.removes != (k < b)
        )
        if wrong < wrong_best:
            best, wrong_best = b, wrong
    return best, wrong_best


def reverted(target: ProcessTarget, result: BisectResult) -> bool:
    return all(
        p.cut is not None and target.read(p.cut.address, p.cut.size) == p.cut.old
        for p in result.planned
    )


def region_of(result: BisectResult) -> dict[str, Any]:
    low, high = result.region()
    return {
        "from": low.location if low else None,
        "to": high.location if high else None,
        "lines": result.lines(),
    }


def bisect_seed(seed: int, statements: int, exhaustive: bool, tmp: Path) -> dict[str, Any]:
    program = branchy_source(seed, statements)
    binary = build(program.source, tmp)
    sock = tmp / "s.sock"
    symptom = CommandTime(f"{binary} client {sock} 10")
    row: dict[str, Any] = {"seed": seed, "function": program.function}
    row["cost_line"] = program.cost_line
    with server(binary, sock) as pid:
        target = ProcessTarget(pid)

        def shown(probe: Probe) -> None:
            verdict = probe.trial.verdict if probe.trial else None
            say(f"  bisect probe {probe.index}: {probe.point.location} -> {verdict}")

        say(f"seed {seed}: bisect {program.function} (cost at line {program.cost_line})")
        result = bisect(target, program.function, symptom, BISECT, progress=shown)
        n = len(result.planned)
        row["points"] = len(result.points)
        row["planned"] = n
        row["bisect"] = {
            "probes": len(result.probes),
            "seconds": round(result.seconds, 1),
            "trial_seconds": round(sum(p.trial.seconds for p in result.probes if p.trial), 1),
            "confidence": result.found.confidence if result.found else None,
            "region": region_of(result),
            "right": lines_hit(result, program.cost_line),
            "verdicts": [p.trial.verdict if p.trial else None for p in result.probes],
            "reverted": reverted(target, result),
        }
        say(f"  bisect: {result.conclusion()}")
        if exhaustive:
            row["every_point"] = every_point(target, program.function, symptom, program.cost_line)
            row["every_point"]["reverted"] = reverted(target, result)
    return row


def every_point(
    target: ProcessTarget, function: str, symptom: CommandTime, cost_line: int
) -> dict[str, Any]:
    """The seed's method: one trial per "return at P" point, all of them, in program order."""
    began = time.monotonic()
    points = return_points(target, function)
    result = BisectResult(function, target.description, symptom.name, points)
    planned = result.planned
    answers: list[Answer] = []
    seconds: list[float] = []
    for k, point in enumerate(planned):
        assert point.cut is not None
        trial = run_trial(target, [point.cut], symptom, TRIAL)
        answer = answer_of(trial)
        answers.append(answer)
        seconds.append(trial.seconds)
        result.probes.append(Probe(k, point, trial, answer))
        say(f"  every point {k + 1}/{len(planned)}: {point.location} -> {trial.verdict}")
    boundary, wrong = best_boundary(answers)
    result.found = Found(boundary, 1.0, len(answers), [], boundary, boundary)
    result.seconds = time.monotonic() - began
    say(f"  every point: {result.conclusion()}")
    scan = min(boundary + 1, len(answers))  # a scan from the entry to the first "does not"
    return {
        "probes": len(answers),
        "seconds": round(result.seconds, 1),
        "trial_seconds": round(sum(seconds), 1),
        "region": region_of(result),
        "right": lines_hit(result, cost_line),
        "boundary": boundary,
        "verdicts_against_boundary": wrong,
        "verdicts": [p.trial.verdict if p.trial else None for p in result.probes],
        "linear_scan_to_boundary": {"probes": scan, "trial_seconds": round(sum(seconds[:scan]), 1)},
    }


def climb_seed(seed: int, tmp: Path) -> dict[str, Any]:
    chain = chain_source(seed)
    binary = build(chain.source, tmp)
    sock = tmp / "s.sock"
    symptom = CommandTime(f"{binary} client {sock} 10")
    say(f"seed {seed}: climb a chain of {len(chain.names)}, culprit {chain.culprit}")

    def shown(fr: FrameResult, stage: str) -> None:
        if stage != "trial":
            say(f"  climb {stage}: {fr.line()}")

    with server(binary, sock, hammer_ms=20) as pid:
        result = climb(ProcessTarget(pid), symptom, CLIMB, progress=shown)
    judged = [f for f in result.frames if f.trial is not None]
    culprit = result.culprit
    say(f"  climb: {result.conclusion()}")
    return {
        "seed": seed,
        "depth": len(chain.names),
        "culprit_planted": chain.culprit,
        "culprit_at": chain.names.index(chain.culprit),
        "frames_on_path": len(result.frames),
        "frames_judged": len(judged),
        "frames_refused": sum(1 for f in result.frames if f.refused),
        "trials": len(judged),
        "windows": sum(len(f.trial.windows) for f in judged if f.trial),
        "seconds": round(result.seconds, 1),
        "trial_seconds": round(sum(f.trial.seconds for f in judged if f.trial), 1),
        "culprit_named": culprit.frame.symbol if culprit else None,
        "right": culprit is not None and culprit.frame.symbol == chain.culprit,
        "verdicts": {f.frame.symbol: f.verdict for f in result.frames},
        "culprit_fanout": culprit.fanout if culprit else None,
        "stopped": result.stopped,
    }


def median(rows: list[dict[str, Any]], *keys: str) -> float | None:
    values = []
    for row in rows:
        value: Any = row
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(float(value))
    return round(statistics.median(values), 1) if values else None


def summary(bisects: list[dict[str, Any]], climbs: list[dict[str, Any]]) -> dict[str, Any]:
    exhaustive = [r for r in bisects if "every_point" in r]
    return {
        "bisect_right": f"{sum(r['bisect']['right'] for r in bisects)}/{len(bisects)}",
        "bisect_probes_median": median(bisects, "bisect", "probes"),
        "bisect_seconds_median": median(bisects, "bisect", "seconds"),
        "planned_points_median": median(bisects, "planned"),
        "every_point_right": f"{sum(r['every_point']['right'] for r in exhaustive)}/"
        f"{len(exhaustive)}",
        "every_point_probes_median": median(exhaustive, "every_point", "probes"),
        "every_point_seconds_median": median(exhaustive, "every_point", "seconds"),
        "bisect_seconds_median_same_seeds": median(exhaustive, "bisect", "seconds"),
        "climb_right": f"{sum(r['right'] for r in climbs)}/{len(climbs)}",
        "climb_trials_median": median(climbs, "trials"),
        "climb_seconds_median": median(climbs, "seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bisect-seeds", type=int, default=3, help="programs to bisect (3)")
    parser.add_argument(
        "--exhaustive-seeds", type=int, default=1, help="of them, also tried point by point (1)"
    )
    parser.add_argument(
        "--statements",
        type=int,
        default=STATEMENTS,
        help=f"steps of the bisected function ({STATEMENTS}; the test's is 40, ~3 points a step)",
    )
    parser.add_argument("--climb-seeds", type=int, default=3, help="chains to climb (3)")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="the JSON file (bench/out/search.json)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit(
            "bench/search.py cuts processes under ptrace and counts with uprobes: run it as root"
        )
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is not installed: run make setup")
    if args.climb_seeds and perf_problem(system_wide=False) is not None:
        raise SystemExit(f"the climb needs perf: {perf_problem(system_wide=False)}")
    load_before = os.getloadavg()
    began = time.monotonic()
    bisects, climbs = [], []
    for i in range(args.bisect_seeds):
        with tempfile.TemporaryDirectory(prefix="knockout-bench-") as tmp:
            exhaustive = i < args.exhaustive_seeds
            bisects.append(
                bisect_seed(BISECT_FIRST_SEED + i, args.statements, exhaustive, Path(tmp))
            )
    for i in range(args.climb_seeds):
        with tempfile.TemporaryDirectory(prefix="knockout-bench-") as tmp:
            climbs.append(climb_seed(CLIMB_FIRST_SEED + i, Path(tmp)))
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True)
    report = {
        "bench": "search",
        "what": "probes (trials) and wall time of bisect against one trial per 'return at P' "
        "point (the seed's method), and of climb, on the tests' planted programs",
        "arguments": vars(args) | {"out": str(args.out)},
        "method": {
            "build": f"gcc {' '.join(CFLAGS)} ({gcc.stdout.splitlines()[0]})",
            "target": "host process under ptrace, as root",
            "symptom": "wall time of 'PROGRAM client SOCK 10' (10 requests)",
            "trial": {"window_s": TRIAL.window, "settle_s": TRIAL.settle, "alpha": TRIAL.alpha},
            "bisect_confidence": BISECT.confidence,
            "climb": {
                "profile_s": CLIMB.profile_seconds,
                "count_s": CLIMB.count_seconds,
                "max_frames": CLIMB.max_frames,
                "hammer": "a client every 20 ms",
            },
            "every_point_seeds": f"the first {min(args.exhaustive_seeds, args.bisect_seeds)} of "
            f"{args.bisect_seeds} bisect seeds (one trial per point is slow)",
            "right": "bisect / every point: the region's source lines hold the costly statement; "
            "climb: the culprit named is the planted one",
        },
        "host": {
            "machine": platform.machine(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "seconds": round(time.monotonic() - began, 1),
        },
        "summary": summary(bisects, climbs),
        "bisect": bisects,
        "climb": climbs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
