"""Guards: evidence that a cut stopped the work instead of fixing it.

Cutting reclaim out of a memcg under ``memory.max`` lowers sys CPU because
the workload gets OOM-killed; cutting a function a caller dereferences kills
the process.  Such a cut must be judged ``breaks``, never ``gone``.  After
every window the trial asks its guards what happened since the last check:

* the target: a process that died (with the signal, from the kernel's log
  line about it where there is one);
* the kernel log (``/dev/kmsg``): new ``BUG:``, ``WARNING:``, ``Oops``,
  ``Call Trace`` ... lines (kernel targets);
* a cgroup's ``memory.events``: new OOM kills (``--cgroup PATH``);
* user commands that must keep exiting 0 (``--guard CMD``).

Each returns one line of evidence per finding, e.g. ``3 OOM kills in
/sys/fs/cgroup/pod``.

>>> kernel_problems(["usb 1-1: new device", "BUG: kernel NULL pointer dereference, address: 0"])
['BUG: kernel NULL pointer dereference, address: 0']
>>> fault_of(["planted[812]: segfault at 0 ip 00005614 sp 00007ffd error 4 in planted"], 812)
'SIGSEGV (segfault at 0 ip 00005614 sp 00007ffd error 4 in planted)'
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from knockout.errors import BadInput, Refused

__all__ = [
    "CgroupOoms",
    "GuardCommand",
    "KernelLog",
    "fault_of",
    "kernel_crash",
    "kernel_problems",
    "oom_reports",
]

#: kernel log lines that mean the kernel is unhappy
PROBLEM = re.compile(
    r"\bOops\b|\bBUG:|\bWARNING:|Call Trace:|general protection fault|Kernel panic|"
    r"list_(add|del) corruption|soft lockup|hard LOCKUP|self-detected stall|rcu_.*stall|"
    r"unable to handle|double fault|invalid opcode:"
)

#: what the kernel logs about a user process's fatal fault, and the signal it sends
_FAULTS = (
    (re.compile(r"\bsegfault at\b"), "SIGSEGV"),
    (re.compile(r"\bgeneral protection( fault)?\b"), "SIGSEGV"),
    (re.compile(r"\btrap invalid opcode\b"), "SIGILL"),
    (re.compile(r"\btrap divide error\b"), "SIGFPE"),
    (re.compile(r"\btrap int3\b"), "SIGTRAP"),
    (re.compile(r"\bunhandled .*exception|\bBad mode\b|\bundefined instruction\b"), "SIGILL"),
)


#: the kernel's OOM report (its stack dump is not a kernel problem: the OOM is the evidence)
OOM = re.compile(r"invoked oom-killer|Out of memory|Memory cgroup out of memory")
#: what still counts as a kernel problem inside an OOM report
_SEVERE = re.compile(r"\bOops\b|\bBUG:|\bWARNING:|general protection fault|Kernel panic")


#: kernel log lines that mean kernel code crashed (a WARNING does not: the kernel goes on);
#: the task that crashed was killed, perhaps holding locks or with interrupts off
CRASH = re.compile(
    r"\bOops\b|\bBUG:|general protection fault|Kernel panic|unable to handle|double fault|"
    r"invalid opcode:|kernel BUG at"
)


def kernel_crash(lines: Sequence[str]) -> str | None:
    """The first line of ``lines`` saying kernel code crashed (an oops, a BUG), or None.

    >>> kernel_crash(["WARNING: CPU: 1 PID: 9 at mm/vmscan.c:1", "BUG: kernel NULL pointer"])
    'BUG: kernel NULL pointer'
    >>> kernel_crash(["WARNING: CPU: 1 PID: 9 at mm/vmscan.c:1"]) is None
    True
    """
    return next((line.strip() for line in lines if CRASH.search(line)), None)


def kernel_problems(lines: Sequence[str]) -> list[str]:
    """The lines of ``lines`` that report a kernel problem (oops, BUG, WARNING, stall...).

    The stack dump of an OOM report is not one (:func:`oom_reports` names the OOM).

    >>> kernel_problems(["app invoked oom-killer: gfp_mask=0xcc0", "Call Trace:"])
    []
    """
    if any(OOM.search(line) for line in lines):
        return [line for line in lines if _SEVERE.search(line)]
    return [line for line in lines if PROBLEM.search(line)]


def oom_reports(lines: Sequence[str]) -> list[str]:
    """The kernel's OOM-killer lines among ``lines`` ("... invoked oom-killer ...")."""
    return [line for line in lines if OOM.search(line)]


def fault_of(lines: Sequence[str], pid: int) -> str | None:
    """The fatal fault the kernel logged for process ``pid``: signal and the log line's text."""
    tag = re.compile(rf"\[{pid}\]: ")
    for line in lines:
        found = tag.search(line)
        if found is None:
            continue
        text = line[found.end() :].strip()
        for pattern, signal in _FAULTS:
            if pattern.search(text):
                return f"{signal} ({text})"
    return None


class KernelLog:
    """The kernel log's records written since this reader was opened (``/dev/kmsg``).

    Unreadable logs (no permission, no ``/dev/kmsg``) read as empty: the other
    guards still work, and :attr:`problem` says why this one cannot.
    """

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.problem: str | None = None
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            self.close()
            self.problem = (
                f"cannot read the kernel log {path} ({exc.strerror}): kernel warnings and "
                "crashes of the target are not watched; run as root"
            )

    def new_lines(self) -> list[str]:
        """The messages logged since the last call, one string each."""
        out: list[str] = []
        while self._fd >= 0:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it: go on
                    continue
                break
            if not record:
                break
            _, _, message = record.decode("utf-8", "replace").partition(";")
            out.append(message.split("\n", 1)[0])
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _oom_kills(events: Path) -> int:
    for line in events.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


class CgroupOoms:
    """OOM kills in a cgroup v2 (``memory.events``' ``oom_kill``), counted from now."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.events = self.path / "memory.events"
        try:
            self._seen = _oom_kills(self.events)
        except FileNotFoundError:
            raise BadInput(
                f"--cgroup {self.path}: no memory.events there; name a cgroup v2 directory "
                "with the memory controller, e.g. /sys/fs/cgroup/pod"
            ) from None
        except PermissionError:
            raise Refused(f"--cgroup {self.path}: cannot read memory.events; run as root") from None

    def new_kills(self) -> int:
        """How many OOM kills happened in the cgroup (and below it) since the last call."""
        try:
            now = _oom_kills(self.events)
        except OSError:
            return 0
        new, self._seen = now - self._seen, now
        return max(new, 0)

    def check(self) -> str | None:
        """Evidence if there were new OOM kills, else None."""
        kills = self.new_kills()
        if not kills:
            return None
        return f"{kills} OOM kill{'s' if kills != 1 else ''} in {self.path}"


class GuardCommand:
    """A command that must keep exiting 0 (``--guard CMD``)."""

    def __init__(
        self, command: str, timeout: float = 60.0, run: Callable[..., Any] | None = None
    ) -> None:
        if not command.strip():
            raise BadInput("--guard needs a command, e.g. --guard 'curl -sf localhost:8080/health'")
        self.command = command
        self.timeout = timeout
        self._run = run or subprocess.run

    def check(self) -> str | None:
        """Evidence if the command failed (its status and last line of output), else None."""
        try:
            proc = self._run(
                self.command,
                shell=True,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"guard {self.command!r} did not finish in {self.timeout:g} s"
        if proc.returncode == 0:
            return None
        last = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-1:] or [""]
        said = f": {last[0][:120]}" if last[0] else ""
        return f"guard {self.command!r} exited with status {proc.returncode}{said}"
