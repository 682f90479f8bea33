#!/usr/bin/env python3
"""Bench: what counting calls costs -- ns per probe hit, set-up time, calls/s -- host and guest.

On the host (uprobes; the probe-cost calibrator of
:mod:`knockout.measure.probecost`, built -O2):

* ``uprobe``: ns per hit at a function entry (``leaf``: the kernel
  single-steps a copy of the first instruction) and at a call site (the
  ``call leaf`` in ``leaf_loop``: x86 emulates a call, no single step), from
  200k calls bare and probed, best of 5 runs each (CPU time of the thread);
* ``perf``: the same entry probe defined by ``perf probe -x`` and counted by
  ``perf stat -e`` (the alternative the issue names), and ``perf stat``'s
  own start-up (wall time of ``perf stat -e cpu-clock -- true``);
* ``setup_s``: defining, enabling, disabling and removing a probe set of two
  points through tracefs (median of 5);
* ``window``: ``count_calls`` for 1 s at ``leaf`` and its call site while
  the calibrator's loop runs flat out under the probes: calls/s (bounded by
  the probes' own cost) and fan-out (1: the site is leaf's only caller).

In the guest (kprobes; Debian's 6.1 under TCG, booted once):

* ``kprobe``: ns per hit at ``__x64_sys_getppid`` (an ftrace-based kprobe:
  the entry is a ``call __fentry__``) and at its call of
  ``__task_pid_nr_ns`` (an int3 kprobe, or jump-optimized), from 20k
  ``getppid()`` calls, best of 3;
* ``window``: ``count_calls`` for 2 s on ``do_sys_poll`` and its call of
  ``__fdget`` while the calibrator polls 7 descriptors flat out: calls/s and
  fan-out (7);
* ``setup_s`` as above, and ``perf_start_s``: ``perf stat -e cpu-clock --
  true`` in the guest.

Writes bench/out/calls.json and prints it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.measure.calls import count_calls, probing  # noqa: E402
from knockout.measure.probecost import (  # noqa: E402
    build_calibrator,
    call_site_offsets,
    kprobe_cost,
    start_calibrator,
    uprobe_cost,
)
from knockout.measure.tracefs import Owner, group_name, mounts  # noqa: E402

OUT = ROOT / "bench" / "out" / "calls.json"
PY = ROOT / ".venv" / "bin" / "python"
POLL_K = 7


def setup_seconds(points: list[str], runs: int = 5, **target: Any) -> float:
    """Median seconds to define + enable + disable + remove a probe set."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with probing(points, **target):
            pass
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def perf_start_seconds(runs: int = 3) -> float:
    """Median wall seconds of ``perf stat -e cpu-clock -- true``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            ["perf", "stat", "-e", "cpu-clock", "--", "true"], check=True, capture_output=True
        )
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


@contextlib.contextmanager
def standard_tracefs() -> Iterator[None]:
    """tracefs at /sys/kernel/tracing (perf looks there), as it was afterwards."""
    standard = "/sys/kernel/tracing"
    mounted = any(p == standard and kind == "tracefs" for p, kind in mounts())
    if not mounted:
        subprocess.run(["mount", "-t", "tracefs", "nodev", standard], check=True)
    try:
        yield
    finally:
        if not mounted:
            subprocess.run(["umount", standard], check=True)


def _calibrator_run(command: list[str]) -> tuple[float, str]:
    """Run ``command`` (ending in the calibrator) with its start byte; (loop CPU s, stderr)."""
    done = subprocess.run(command, input=b"g", capture_output=True, check=True)
    lines = done.stdout.decode().split()
    return int(lines[-1]) / 1e9, done.stderr.decode()


def perf_uprobe(binary: Path, n: int = 200_000, runs: int = 5) -> dict[str, Any]:
    """ns per hit of ``perf probe -x BINARY leaf`` counted by ``perf stat``."""
    # a knockout-owned group name: if this bench dies, the next probe set removes it
    group = group_name(Owner.current(), 99)
    plain = min(_calibrator_run([str(binary), "leaf", str(n)])[0] for _ in range(runs))
    with standard_tracefs():
        subprocess.run(
            ["perf", "probe", "-q", "-x", str(binary), "-a", f"{group}:leaf=leaf"],
            check=True,
            capture_output=True,
        )
        try:
            best, hits = None, 0
            for _ in range(runs):
                command = ["perf", "stat", "-x,", "-e", f"{group}:leaf", "--"]
                seconds, err = _calibrator_run([*command, str(binary), "leaf", str(n)])
                hits = int(
                    next(ln for ln in err.splitlines() if f"{group}:leaf" in ln).split(",")[0]
                )
                best = seconds if best is None else min(best, seconds)
        finally:
            subprocess.run(["perf", "probe", "-q", "-d", f"{group}:*"], capture_output=True)
    assert best is not None
    return {
        "point": "leaf",
        "hits": hits,
        "calls": n,
        "plain_s": round(plain, 6),
        "probed_s": round(best, 6),
        "ns_per_hit": round((best - plain) / hits * 1e9, 1),
    }


def flat_out_window(
    binary: Path, mode: str, points: list[str], seconds: float, kernel: bool = False
) -> dict[str, Any]:
    """count_calls over ``seconds`` while the calibrator runs ``mode`` flat out; the fan-out
    is calls at ``points[1]`` per call at ``points[0]``."""
    process = start_calibrator(binary, mode, 10**9, POLL_K)
    assert process.stdin is not None
    process.stdin.write(b"g")
    process.stdin.flush()
    try:
        if kernel:
            counts = count_calls(points, seconds, kernel=True)
        else:
            counts = count_calls(points, seconds, pid=process.pid)
    finally:
        process.kill()
        process.wait()
    out = counts.as_dict()
    out["fanout"] = counts.fanout(points[0], points[1])
    return out


def on_host_figures(tmp: Path) -> dict[str, Any]:
    binary = build_calibrator(tmp)
    site = f"leaf_loop+{call_site_offsets(str(binary), 'leaf_loop', 'leaf')[0]:#x}"
    return {
        "kernel": platform.release(),
        "uprobe": [c.as_dict() for c in uprobe_cost(binary, runs=5)],
        "perf": {"uprobe": perf_uprobe(binary), "perf_start_s": perf_start_seconds()},
        "setup_s": _host_setup(binary, site),
        "window": flat_out_window(binary, "leaf", ["leaf", site], 1.0),
    }


def _host_setup(binary: Path, site: str) -> float:
    process = start_calibrator(binary, "leaf", 1)
    try:
        return setup_seconds(["leaf", site], pid=process.pid)
    finally:
        process.kill()
        process.wait()


def in_guest(out: Path, binary: Path, getppid_site: str, poll_site: str) -> dict[str, Any]:
    """The guest's figures (run inside it)."""
    result = {
        "kernel": platform.release(),
        "kprobe": [c.as_dict() for c in kprobe_cost(binary, ["__x64_sys_getppid", getppid_site])],
        "setup_s": setup_seconds(["__x64_sys_getppid", getppid_site], kernel=True),
        "window": flat_out_window(binary, "poll", ["do_sys_poll", poll_site], 2.0, kernel=True),
        "perf_start_s": perf_start_seconds(),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def guest_figures(tmp: Path) -> dict[str, Any]:
    from knockout.dwarf import debug_vmlinux
    from knockout.vm import default_kernel, kernel_release, run_in_guest

    release = kernel_release(default_kernel())
    vmlinux = debug_vmlinux(release)
    if vmlinux.path is None:
        raise SystemExit(vmlinux.reason)
    path = str(vmlinux.path)
    getppid = call_site_offsets(path, "__x64_sys_getppid", "__task_pid_nr_ns")[0]
    poll = call_site_offsets(path, "do_sys_poll", "__fdget")[0]
    binary = build_calibrator(tmp)
    out = tmp / "guest.json"
    command = (
        f"{PY} {Path(__file__).resolve()} --in-guest {out} {binary} "
        f"__x64_sys_getppid+{getppid:#x} do_sys_poll+{poll:#x}"
    )
    r = run_in_guest(command, rwdir=[tmp], timeout=1800)
    if r.returncode != 0 or not out.exists():
        raise SystemExit(f"the guest part failed:\n{r.output}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def on_host() -> int:
    with tempfile.TemporaryDirectory(prefix="calls-bench-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        result = {
            "host": on_host_figures(tmp),
            "guest": guest_figures(tmp),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(OUT.read_text(), end="")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--in-guest"]:
        in_guest(Path(argv[1]), Path(argv[2]), argv[3], argv[4])
        return 0
    return on_host()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
