#!/usr/bin/env python3
"""Bench: latency of a live process cut, apply + verify + revert, with 1 and 64 threads.

The target is tests/process/target.c built with ``gcc -O2 -g``:

* ``1 thread``: the single-threaded program, its one thread calling the cut
  function in a hot loop;
* ``64 threads``: 64 workers calling it, each sleeping 10 ms per iteration
  (64 busy threads would only measure the scheduler of this shared 2-core
  machine).

Each cycle plans nothing (the cut is planned once): it applies the cut
(journal write, every thread seized and interrupted, pcs checked, old bytes
verified, new bytes written through /proc/PID/mem and read back, detach),
then reverts it the same way.  After the cycles the program must still answer
with correct results, and the function's bytes must equal the ELF's.

Writes bench/out/process_cut.json and prints the same JSON.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.cuts import Return  # noqa: E402
from knockout.journal import Journal  # noqa: E402
from knockout.plan import plan_at  # noqa: E402
from knockout.targets.process import ProcessTarget  # noqa: E402

CYCLES = 200
SOURCE = ROOT / "tests" / "process" / "target.c"
OUT = ROOT / "bench" / "out" / "process_cut.json"
NORMAL = "22,1049,1"


def build(directory: Path) -> Path:
    binary = directory / "target"
    subprocess.run(
        ["gcc", "-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o", str(binary), str(SOURCE)],
        check=True,
    )
    return binary


def sample(proc: subprocess.Popen[str]) -> set[str]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    return set(proc.stdout.readline().split())


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p95_ms": round(p95 * 1e3, 3),
        "min_ms": round(ordered[0] * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
    }


def measure(binary: Path, argv: list[str], journal: Journal) -> dict[str, object]:
    proc = subprocess.Popen(
        [str(binary), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        target = ProcessTarget(proc.pid, journal=journal)
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))  # workers + the main thread
        planned = plan_at(target, "compute", Return(42))
        original = target.read(planned.address, 64)
        cycle, apply, revert = [], [], []
        for _ in range(CYCLES):
            t0 = time.perf_counter()
            applied = target.apply(planned)
            t1 = time.perf_counter()
            target.revert(applied)
            t2 = time.perf_counter()
            cycle.append(t2 - t0)
            apply.append(t1 - t0)
            revert.append(t2 - t1)
        assert sample(proc) == {NORMAL}, "the program's output went wrong"
        assert target.read(planned.address, 64) == original, "bytes not restored"
        return {
            "threads_total": threads,
            "argv": argv,
            "cycles": CYCLES,
            "apply_verify_revert": summary(cycle),
            "apply": summary(apply),
            "revert": summary(revert),
            "single_steps": target.steps_taken,
        }
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(Path(tmp))
        journal = Journal(Path(tmp) / "journal")
        results = [
            measure(binary, ["0"], journal),
            measure(binary, ["64", "idle"], journal),
        ]
    report = {
        "bench": "process_cut",
        "what": "apply+verify+revert of a 'return 42' cut at a function's entry, "
        "in seconds of wall clock per cycle",
        "host": {
            "machine": platform.machine(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": os.getloadavg(),
        },
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
