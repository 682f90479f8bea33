#!/usr/bin/env python3
"""Bench: the seed's reclaim storm in the guest, healthy and with N child memcgs.

Boots the seed's kernel series (Debian's 6.1, :func:`knockout.seedcuts.seed_kernel`)
twice, one guest at a time: with kmem accounting on (Debian's default) and
with the seed's ``cgroup.memory=nokmem``.  Each boot runs
``python -m knockout.workloads.memcg_storm run`` over the phases below: the
same workload with 0 children (healthy), then with more and more, measured
in windows after a warm-up, all in one set-up (the ramdisk and files are
made once; children are only added).

Per phase: sys %, user %, reclaim events/s (the pod's ``memory.events``
``max``), pgsteal/s, the workers' read rate (MB/s), OOM kills, as mean,
stdev and CV over the windows, plus the raw windows; per boot: boot time,
set-up times (ramdisk and files, spin calibration, populating each phase's
children, workers starting).  Writes bench/out/storm.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.seedcuts import seed_kernel  # noqa: E402
from knockout.vm import GuestSession, kernel_release  # noqa: E402
from knockout.workloads.memcg_storm import build_helper  # noqa: E402

OUT = ROOT / "bench" / "out" / "storm.json"
PY = ROOT / ".venv" / "bin" / "python"
KMEM_PHASES = os.environ.get("STORM_PHASES", "0,1000,2000,5000")
NOKMEM_PHASES = os.environ.get("STORM_NOKMEM_PHASES", "0,2000,5000")
WINDOWS = int(os.environ.get("STORM_WINDOWS", "6"))
WINDOW = float(os.environ.get("STORM_WINDOW", "2.0"))
WARMUP = float(os.environ.get("STORM_WARMUP", "5"))
FIGURES = ("sys_pct", "user_pct", "reclaim_events_per_s", "pgsteal_per_s", "read_mb_s")


def summarize(windows: list[dict[str, float]]) -> dict[str, Any]:
    """Mean, stdev and CV of each figure over the windows; OOM kills summed."""
    out: dict[str, Any] = {}
    for key in FIGURES:
        values = [w[key] for w in windows]
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = {
            "mean": round(mean, 2),
            "stdev": round(sd, 2),
            "cv": round(sd / mean, 3) if mean else None,
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
    out["oom_kills"] = sum(int(w["oom_kills"]) for w in windows)
    return out


def one_boot(kernel_args: list[str], phases: str) -> dict[str, Any]:
    command = (
        f"cd {ROOT} && {PY} -m knockout.workloads.memcg_storm run --phases {phases} "
        f"--warmup {WARMUP} --windows {WINDOWS} --window {WINDOW}"
    )
    with GuestSession(kernel=seed_kernel(), kernel_args=kernel_args) as guest:
        result = guest.run(command, timeout=1800)
        boot = guest.boot_seconds
    if result.returncode != 0:
        raise SystemExit(f"storm run failed ({result.returncode}):\n{result.output}")
    run = json.loads(result.output[result.output.index("{") :])
    return {
        "kernel_args": kernel_args,
        "boot_s": round(boot, 2),
        "run_s": round(result.seconds, 1),
        "setup": {k: round(v, 2) for k, v in run["setup"].items()},
        "teardown": run["teardown"],
        "phases": [
            {
                "children": p["children"],
                "populate_s": p["populate_s"],
                "workers_start_s": p["workers_start_s"],
                "kmem": p["kmem"],
                "summary": summarize(p["windows"]),
                "windows": p["windows"],
            }
            for p in run["phases"]
        ],
    }


def main() -> int:
    build_helper()
    started = time.time()
    runs = {
        "kmem": one_boot([], KMEM_PHASES),
        "nokmem": one_boot(["cgroup.memory=nokmem"], NOKMEM_PHASES),
    }
    report = {
        "bench": "storm",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": {
            "release": platform.release(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
        },
        "guest": f"{kernel_release(seed_kernel())}, TCG, 2 vCPUs, 4 GiB, no swap",
        "method": (
            "python -m knockout.workloads.memcg_storm run: one set-up per boot, phases of N "
            f"child memcgs measured in {WINDOWS} windows of {WINDOW:g} s after {WARMUP:g} s "
            "warm-up; sys/user % of all CPUs (/proc/stat); reclaim events = the pod's "
            "memory.events 'max'; read MB/s = the workers' counters"
        ),
        "wall_s": round(time.time() - started, 1),
        "runs": runs,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    brief = {
        mode: [
            (
                p["children"],
                p["summary"]["sys_pct"]["mean"],
                p["summary"]["reclaim_events_per_s"]["mean"],
                p["summary"]["read_mb_s"]["mean"],
            )
            for p in run["phases"]
        ]
        for mode, run in runs.items()
    }
    print(json.dumps({"children, sys %, reclaim/s, MB/s": brief}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
