#!/usr/bin/env python3
"""Bench: a live kernel cut's latency, and what an active cut costs a hot syscall.

Runs inside the guest (on the host it builds knockout.ko and a tiny C loop,
boots the guest with ``bench/out`` shared read-write, and runs itself there
with ``--in-guest``).  All figures come from one run, one boot:

* ``latency``: apply + verify + revert of ``__x64_sys_getppid --return 42``
  through ``KernelTarget`` (the module checks and writes, userspace reads the
  site back through the module, the module reverts and checks): median and
  p90 over 1000 cycles.  That cut replaces ``push rbx; call ...``: an
  instruction boundary lies inside the jmp, so the module applies it with
  the optprobe protocol: the cut is in effect once its INT3 diverts
  entrants to the stub, and the jmp follows after an RCU-tasks grace period.
* ``jmp_wait``: seconds from apply until the module lists the jmp in place
  (phase ``jmp``), over 20 cuts: the grace period's cost.
* ``per_call``: ns per ``getppid()`` in a C loop under each configuration,
  interleaved over several rounds (median of the rounds), and the ratio to
  no cut:

  - ``none``: nothing in place;
  - ``text_noop``: an A/A text cut (jmp to a stub holding the same
    instructions) at ``__x64_sys_getppid+0xb``;
  - ``kprobe_noop``: a kprobe whose handler does nothing at the same
    address (the kernel may jump-optimize it: ``kprobe_noop_kind`` says);
  - ``text_return``: ``--return 42`` as a text cut at the entry;
  - ``kprobe_return``: the same override by a kprobe at the entry whose
    handler sets rax and resumes at a bare return (fail_function's way).

Writes bench/out/kernel_cut.json and prints the same JSON.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.cuts import Identity, Return  # noqa: E402
from knockout.plan import plan_at  # noqa: E402
from knockout.targets import cut as cut_context  # noqa: E402

OUT = ROOT / "bench" / "out" / "kernel_cut.json"
FUNCTION = "__x64_sys_getppid"
CYCLES = 1000
CALLS = 500_000
ROUNDS = 9
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
	long n = atol(argv[1]), last = 0;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		last = syscall(SYS_getppid);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.2f %ld\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, last);
	return 0;
}
"""


def _loop(binary: str) -> tuple[float, int]:
    out = subprocess.run([binary, str(CALLS)], capture_output=True, text=True, check=True)
    ns, last = out.stdout.split()
    return float(ns), int(last)


def _kprobe_kind(address: int) -> str:
    """How the kernel implemented our kprobe: [OPTIMIZED], [FTRACE] or plain int3."""
    try:
        text = Path("/sys/kernel/debug/kprobes/list").read_text()
    except OSError:
        return "unknown (no debugfs)"
    for line in text.splitlines():
        if line.startswith(f"{address:016x}"):
            flags = [w for w in line.split() if w.startswith("[")]
            return " ".join(flags) or "int3"
    return "not listed"


def _protocol(target: Any, planned: Any) -> str:
    """How the module writes this cut: "bp" (no wait) or "optprobe" (INT3, wait, jmp)."""
    with cut_context(target, planned) as applied:
        listed = [c for c in target.list_cuts() if c.id == applied.handle]
    return str(listed[0].protocol) if listed else "?"


def _wait_jmp(target: Any, cut_id: object, timeout: float = 30.0) -> None:
    """Until the module lists cut ``cut_id`` with its jmp in place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.id == cut_id and c.phase == "jmp" for c in target.list_cuts()):
            return
        time.sleep(0.005)
    raise TimeoutError(f"cut {cut_id} never reached phase=jmp in {timeout:g} s")


def in_guest(out_path: Path, binary: str) -> dict[str, object]:
    from knockout.targets import cut
    from knockout.targets.kernel import KernelTarget

    result: dict[str, object] = {
        "kernel": platform.release(),
        "function": FUNCTION,
        "cpus": os.cpu_count(),
        "note": "QEMU TCG guest: absolute times are emulation times; compare ratios",
    }
    with KernelTarget(ttl=60) as t:
        entry = plan_at(t, FUNCTION, Return(42))
        noop = plan_at(t, f"{FUNCTION}+0xb", Identity())
        original = t.read_text(entry.address, entry.size)
        # latency: apply + read back + revert
        times = []
        for _ in range(CYCLES):
            t0 = time.perf_counter()
            applied = t.apply(entry)
            site = t.read_text(entry.address, 5)
            t.revert(applied)
            times.append(time.perf_counter() - t0)
            assert site[0] in (0xCC, 0xE9), site.hex()  # INT3 phase, or the jmp
        times.sort()
        assert t.read_text(entry.address, entry.size) == original
        # the floor: one command round trip (a 5-byte read) from Python under TCG
        floor = []
        for _ in range(CYCLES):
            t0 = time.perf_counter()
            t.read_text(entry.address, 5)
            floor.append(time.perf_counter() - t0)
        floor.sort()
        result["latency"] = {
            "cycles": CYCLES,
            "what": "apply (module: verify old, checks, stub, INT3 + sync, read back) + "
            "userspace read-back through the module + revert (verify, first byte + sync)",
            "protocol": _protocol(t, entry),
            "median_ms": round(times[len(times) // 2] * 1e3, 3),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1e3, 3),
            "max_ms": round(times[-1] * 1e3, 3),
            "goal_ms": 1.0,
            "one_command_roundtrip_median_ms": round(floor[len(floor) // 2] * 1e3, 3),
        }

        waits = []
        for _ in range(20):
            t0 = time.perf_counter()
            with cut(t, entry) as applied:
                _wait_jmp(t, applied.handle)
                waits.append(time.perf_counter() - t0)
        waits.sort()
        result["jmp_wait"] = {
            "cuts": len(waits),
            "what": "apply until the module lists phase=jmp (synchronize_rcu + "
            "synchronize_rcu_tasks on its workqueue, then tail and first byte)",
            "median_s": round(waits[len(waits) // 2], 3),
            "max_s": round(waits[-1], 3),
        }

        entry_addr = t.symbols().lookup(FUNCTION).address

        def kprobe(address: int, mode: str) -> int:
            answer = t.control.command(f"kprobe {address:x} {mode} 60000")
            return int(answer.removeprefix("id="))

        configs = ["none", "text_noop", "kprobe_noop", "text_return", "kprobe_return"]
        samples: dict[str, list[float]] = {c: [] for c in configs}
        lasts: dict[str, int] = {}
        kinds: dict[str, str] = {}
        for _ in range(ROUNDS):
            for config in configs:
                if config == "none":
                    ns, last = _loop(binary)
                elif config.startswith("text_"):
                    with cut(t, noop if config == "text_noop" else entry) as applied:
                        _wait_jmp(t, applied.handle)  # measure the jmp, not the INT3 phase
                        ns, last = _loop(binary)
                else:
                    address = noop.address if config == "kprobe_noop" else entry_addr
                    mode = "pass" if config == "kprobe_noop" else "ret=2a"
                    kid = kprobe(address, mode)
                    try:
                        time.sleep(0.2)  # let the kprobe optimizer run, as it would in use
                        kinds[config] = _kprobe_kind(address)
                        ns, last = _loop(binary)
                    finally:
                        t.control.command(f"revert {kid}")
                    # an optimized kprobe's jmp is taken out later, by the kprobe optimizer
                    settle = time.monotonic() + 10
                    while time.monotonic() < settle and (
                        t.read_text(noop.address, noop.size) != noop.old
                        or t.read_text(entry.address, entry.size) != entry.old
                    ):
                        time.sleep(0.01)
                samples[config].append(ns)
                lasts[config] = last
        base = statistics.median(samples["none"])
        result["per_call"] = {
            c: {
                "ns_median": round(statistics.median(samples[c]), 1),
                "ns_rounds": samples[c],
                "ratio_to_none": round(statistics.median(samples[c]) / base, 3),
                "getppid_returned": lasts[c],
            }
            for c in configs
        }
        result["kprobe_noop_kind"] = kinds.get("kprobe_noop", "")
        result["kprobe_return_kind"] = kinds.get("kprobe_return", "")
        result["calls_per_round"] = CALLS
        result["rounds"] = ROUNDS
        result["text_identical_after"] = t.read_text(entry.address, entry.size) == original
        result["cuts_left"] = [c.id for c in t.list_cuts()]
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def on_host() -> int:
    from knockout.targets.kernel import build_module
    from knockout.vm import default_kernel, kernel_release, run_in_guest

    build_module(kernel_release(default_kernel()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kernel-cut-bench-") as tmp:
        source = Path(tmp) / "loop.c"
        source.write_text(LOOP_C)
        binary = Path(tmp) / "loop"
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        OUT.unlink(missing_ok=True)
        py = ROOT / ".venv" / "bin" / "python"
        command = f"{py} {Path(__file__).resolve()} --in-guest {OUT} {binary}"
        r = run_in_guest(command, rwdir=[OUT.parent, tmp], timeout=1800)
        if r.returncode != 0 or not OUT.exists():
            print(r.output, file=sys.stderr)
            return 1
    print(OUT.read_text(), end="")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--in-guest"]:
        print(json.dumps(in_guest(Path(argv[1]), argv[2]), indent=1))
        return 0
    return on_host()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
