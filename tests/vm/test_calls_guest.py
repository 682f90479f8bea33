"""The guest side of tests/vm/test_calls.py: count kernel calls with kprobes, report JSON.

Run inside the guest (one Python start: they are slow under TCG)::

    python -m tests.vm.test_calls_guest OUT CALIBRATOR M K GETPPID_SITE POLL_SITE

The calibrator (:mod:`knockout.measure.probecost`) makes exactly M
``getppid()`` calls, or M ``poll()`` calls over K descriptors (each looks
up every descriptor: the lookup's call site in ``do_sys_poll`` runs K times
a call).  Each window is also run with M = 0, the baseline: whatever else
the program does on the probed paths.  Nothing is judged here; the host
test asserts on what this writes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from knockout.measure.calls import ProbeSet, count_calls, counts_between, probing
from knockout.measure.probecost import kprobe_cost, run_calibrator, start_calibrator
from knockout.measure.tracefs import parse_group

__all__ = ["main", "scenario"]

TRACEFS = Path("/sys/kernel/tracing")
GETPPID = "__x64_sys_getppid"
POLL = "do_sys_poll"


def leftovers(owner_pid: int) -> list[str]:
    """Probe groups and tracing instances of ``owner_pid`` in the guest's tracefs."""
    names = set()
    for line in (TRACEFS / "kprobe_events").read_text().splitlines():
        names.add(line.split()[0].split(":", 1)[1].split("/")[0])
    names |= {p.name for p in (TRACEFS / "instances").iterdir()}
    return sorted(n for n in names if (parsed := parse_group(n)) and parsed[0].pid == owner_pid)


def window(probes: ProbeSet, calibrator: Path, mode: str, m: int, k: int) -> dict[str, int]:
    """Calls counted at every probe while the calibrator makes ``m`` calls of ``mode``."""
    process = start_calibrator(calibrator, mode, m, k)
    start = probes.read()
    run_calibrator(process)
    counts = counts_between(start, probes.read(), probes.target, "kprobe")
    return {p: counts.calls(p) for p in counts.hits}


def refusals(getppid_site: str) -> dict[str, str]:
    """What counting says for points the kernel refuses: blacklisted, mid-instruction, unknown."""
    blacklist = Path("/sys/kernel/debug/kprobes/blacklist").read_text().split("\n", 1)[0]
    listed = blacklist.split()[-1]  # "0xSTART-0xEND\tSYMBOL": a kernel symbol
    function, offset = getppid_site.split("+")
    inside = f"{function}+{int(offset, 16) + 1:#x}"  # the second byte of the call
    out = {}
    for spec in (listed, inside, "knockout_no_such_function"):
        try:
            count_calls([spec], 0.1, kernel=True)
            out[spec] = "counted"
        except Exception as exc:  # the host test judges the type and message
            out[spec] = f"{type(exc).__name__}: {exc}"
    return out


def killed_owner() -> dict[str, Any]:
    """A knockout holding a kprobe is SIGKILLed; the next probe set removes what it left.

    The holder is a fork of this process (a new Python would spend seconds importing
    under TCG); it has its own pid and start time, so its own probe group.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the holder
        os.close(read_end)
        with probing([GETPPID], kernel=True) as probes:
            os.write(write_end, probes.group.encode() + b"\n")
            time.sleep(300)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as said:
        group = said.readline().strip()
    held = leftovers(child)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    after_kill = leftovers(child)
    with probing([GETPPID], kernel=True):
        after_next = leftovers(child)
    return {"group": group, "held": held, "after_kill": after_kill, "after_next": after_next}


def scenario(calibrator: Path, m: int, k: int, getppid_site: str, poll_site: str) -> dict[str, Any]:
    """Everything the host test checks, in one guest process."""
    me = os.getpid()
    points = [GETPPID, getppid_site, POLL, poll_site]
    out: dict[str, Any] = {"m": m, "k": k, "points": points}
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 3)
        mark = now

    with probing(points, kernel=True) as probes:
        out["held"] = leftovers(me)
        out["group"] = probes.group
        for mode in ("getppid", "poll"):
            out[f"{mode}_baseline"] = window(probes, calibrator, mode, 0, k)
            out[mode] = window(probes, calibrator, mode, m, k)
    out["left"] = leftovers(me)
    phase("counts")
    out["refusals"] = refusals(getppid_site)
    out["left_after_refusals"] = leftovers(me)
    phase("refusals")
    out["killed_owner"] = killed_owner()
    phase("killed_owner")
    out["cost"] = [c.as_dict() for c in kprobe_cost(calibrator, [GETPPID, getppid_site], runs=2)]
    out["left_at_end"] = leftovers(me)
    phase("cost")
    out["phase_seconds"] = phases
    return out


def main(argv: list[str]) -> int:
    """``OUT CALIBRATOR M K GETPPID_SITE POLL_SITE``: run :func:`scenario`, write its JSON."""
    out, calibrator, m, k, getppid_site, poll_site = argv
    result = scenario(Path(calibrator), int(m), int(k), getppid_site, poll_site)
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
