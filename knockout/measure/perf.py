"""Recording profiles with ``perf`` and reading ``perf script`` output.

One ``perf record`` runs for the whole trial, with sample times on
``CLOCK_MONOTONIC`` (``-k CLOCK_MONOTONIC``, the clock of Python's
:func:`time.monotonic`) and ``--switch-output=signal``: at the end of each
window :class:`Recorder` sends SIGUSR2, perf writes what it has to a new
file and goes on recording, and the samples whose time falls inside the
window become that window's :class:`~knockout.measure.profile.Profile`.
Samples taken while a cut is being applied or reverted are thereby left out.

System-wide (``-a -g -e cpu-clock``) by default: the software clock event
works in VMs without a PMU.  For a process target, ``pid=`` records that
process only, with ``--call-graph dwarf`` so that -O2 code built without
frame pointers still yields whole stacks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from knockout.errors import Refused

__all__ = [
    "PERF_SCRIPT_FIELDS",
    "Recorder",
    "Sample",
    "between",
    "parse_script",
    "perf_problem",
]

#: the fields :func:`parse_script` reads
PERF_SCRIPT_FIELDS = "comm,pid,tid,time,ip,sym,dso"

_HEADER = re.compile(r"^(?P<comm>\S.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+(?P<time>\d+\.\d+):")
# the dso is the last parenthesized group, itself maybe with one level of parentheses:
# "[unknown] (/memfd:x (deleted))", "operator new(unsigned long) (/usr/lib/libstdc++.so.6)"
_FRAME = re.compile(
    r"^\s+(?P<ip>[0-9a-f]+)\s(?:(?P<sym>.*)\s)?\((?P<dso>[^()]*(?:\([^()]*\)[^()]*)*)\)$"
)
_DUMP = re.compile(r"\[ perf record: Dump (?P<path>\S+) \]")


@dataclass(frozen=True)
class Sample:
    """One perf sample: who was on the CPU, when, and the stack (leaf first).

    ``stack`` names the frames; ``ips`` and ``dsos`` (same length, or empty)
    keep where each frame was: for the leaf the sampled instruction, for
    every other frame the return address of the call it made (as perf prints
    it: kernel addresses as they are, user ones as perf maps them into their
    file), so the call site in the caller can be found
    (:func:`knockout.callsites.call_site`).
    """

    comm: str
    pid: int
    tid: int
    time: float  # seconds, on the recording's clock
    stack: tuple[str, ...]
    ips: tuple[int, ...] = ()
    dsos: tuple[str, ...] = ()

    @property
    def idle(self) -> bool:
        """The CPU was idle (the swapper task, pid 0)."""
        return self.pid == 0


def _frame_name(sym: str, dso: str) -> str:
    """A frame's name: the symbol, or ``[dso]`` when perf could not name it."""
    sym = sym.strip()
    if sym and sym != "[unknown]":
        return sym
    name = os.path.basename(dso.removesuffix(" (deleted)")).strip("[]")
    return f"[{name or 'unknown'}]"


def parse_script(lines: Iterable[str]) -> Iterator[Sample]:
    """Samples from ``perf script -F comm,pid,tid,time,ip,sym,dso`` output of a ``-g`` recording.

    Lines that are neither a sample header nor a frame (warnings perf mixes
    in) are skipped; a sample without frames has an empty stack.
    """
    head: re.Match[str] | None = None
    frames: list[re.Match[str]] = []
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            if head is not None:
                yield _sample(head, frames)
            head, frames = None, []
            continue
        frame = _FRAME.match(line) if head is not None else None
        if frame is not None:
            frames.append(frame)
            continue
        match = _HEADER.match(line)
        if match is not None:
            if head is not None:
                yield _sample(head, frames)
            head, frames = match, []
    if head is not None:
        yield _sample(head, frames)


#: perf's dso for a frame it reconstructed from inline debug info: not a frame of the stack
INLINED = "inlined"


def _machine_frames(frames: list[re.Match[str]]) -> list[tuple[str, int, str]]:
    """One ``(name, ip, dso)`` per frame of the machine's stack.

    perf prints the functions inlined at an ip as frames of their own, with
    the dso ``(inlined)``, before the function that holds the ip.  They are
    not frames of the stack: one is kept per ip, the holding function; where
    perf named only inlined functions at an ip (an LTO build), the outermost
    of them stands for it, with the dso of the next frame that has one
    (callers can name it from the file: :mod:`knockout.search.climb`).
    """
    out: list[tuple[str, int, str]] = []
    i = 0
    while i < len(frames):
        ip = frames[i]["ip"]
        j = i
        while j + 1 < len(frames) and frames[j + 1]["ip"] == ip:
            j += 1
        group = frames[i : j + 1]
        real = [f for f in group if f["dso"] != INLINED]
        chosen = real[-1] if real else group[-1]
        out.append((_frame_name(chosen["sym"] or "", chosen["dso"]), int(ip, 16), chosen["dso"]))
        i = j + 1
    for k in range(len(out) - 1, -1, -1):  # an inline-only frame: the dso of its caller
        if out[k][2] == INLINED:
            below = next((d for _, _, d in out[k + 1 :] if d != INLINED), INLINED)
            out[k] = (out[k][0], out[k][1], below)
    return out


def _sample(head: re.Match[str], frames: list[re.Match[str]]) -> Sample:
    machine = _machine_frames(frames)
    return Sample(
        comm=head["comm"].strip(),
        pid=int(head["pid"]),
        tid=int(head["tid"]),
        time=float(head["time"]),
        stack=tuple(name for name, _, _ in machine),
        ips=tuple(ip for _, ip, _ in machine),
        dsos=tuple(dso for _, _, dso in machine),
    )


def between(samples: Iterable[Sample], start: float, end: float) -> list[Sample]:
    """The samples taken from ``start`` to ``end`` (seconds on the recording's clock)."""
    return [s for s in samples if start <= s.time <= end]


def _ignore_sigusr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _catches(pid: int, sig: int, timeout: float) -> bool:
    """Wait until process ``pid`` has a handler for ``sig`` (``SigCgt`` in its status)."""
    deadline = time.monotonic() + timeout
    bit = 1 << (sig - 1)
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) & bit:
                return True
        time.sleep(0.02)
    return False


def perf_problem(system_wide: bool = True) -> str | None:
    """Why ``perf record`` cannot work here, with the fix; None if it should."""
    if shutil.which("perf") is None:
        return (
            "perf not found; install it (Debian: apt-get install linux-perf) to see where "
            "the heat moved"
        )
    if os.geteuid() == 0:
        return None
    try:
        level = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    except (OSError, ValueError):
        return None
    allowed = 0 if system_wide else 2
    if level > allowed:
        return (
            f"perf refused: kernel.perf_event_paranoid is {level}; run as root or "
            f"'sysctl -w kernel.perf_event_paranoid={allowed}'"
        )
    return None


class Recorder:
    """One ``perf record`` for a whole trial, cut into windows on demand.

    >>> rec = Recorder(Path("/tmp/k"))             # doctest: +SKIP
    >>> rec.start(); t0 = time.monotonic()          # doctest: +SKIP
    >>> samples = between(rec.script(rec.rotate()), t0, time.monotonic())  # doctest: +SKIP
    """

    def __init__(
        self,
        workdir: Path,
        *,
        pid: int | None = None,
        freq: int | None = None,
        kallsyms: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.pid = pid
        self.freq = freq or (199 if pid is not None else 499)
        self.kallsyms = kallsyms
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "perf-record.log"
        self._seen_dumps = 0
        #: seconds perf may take to start recording (slow under TCG: it reads every module)
        self.start_timeout = 120.0

    def command(self) -> list[str]:
        """The ``perf record`` command line."""
        argv = ["perf", "record", "-e", "cpu-clock", "-F", str(self.freq)]
        argv += ["-k", "CLOCK_MONOTONIC", "--switch-output=signal"]
        if self.pid is None:
            argv += ["-a", "-g"]
        else:
            argv += ["-p", str(self.pid), "--call-graph", "dwarf,8192"]
        return [*argv, "-o", str(self.workdir / "window.data")]

    def start(self) -> None:
        """Start recording; :class:`Refused` (saying how to fix it) if perf cannot."""
        problem = perf_problem(system_wide=self.pid is None)
        if problem:
            raise Refused(problem)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # until perf installs its handler, a rotation must not kill it (SIGUSR2's default)
                preexec_fn=_ignore_sigusr2,
            )
        ready = _catches(self._proc.pid, signal.SIGUSR2, self.start_timeout)
        time.sleep(0.3)  # perf opens its events; an immediate exit is a refusal
        if self._proc.poll() is not None:
            reason = self._log.read_text(errors="replace").strip().splitlines()
            self._proc = None
            first = next((r for r in reason if r.strip()), "no output")
            raise Refused(
                f"perf record failed ({first.strip()}); check 'perf record -a true' by hand, "
                "or run as root"
            )
        if not ready:
            self.stop()
            raise Refused(
                f"perf record did not start recording within {self.start_timeout:g} s (busy "
                "machine? perf reading every module?); the trial goes on without profiles"
            )

    def _dumps(self) -> list[Path]:
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        return [Path(m["path"]) for m in _DUMP.finditer(text)]

    def rotate(self, timeout: float = 15.0) -> Path | None:
        """Make perf write what it has recorded so far to a new file; that file, or None."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        want = self._seen_dumps + 1
        self._proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dumps = self._dumps()
            if len(dumps) >= want:
                self._seen_dumps = len(dumps)
                path = dumps[want - 1]
                return path if path.is_absolute() else Path.cwd() / path
            time.sleep(0.02)
        return None

    def script(self, data: Path) -> list[Sample]:
        """Samples of one recorded file (``perf script``), deleting the file after."""
        argv = ["perf", "script", "-i", str(data), "-F", PERF_SCRIPT_FIELDS, "--ns"]
        if self.kallsyms:
            argv.append(f"--kallsyms={self.kallsyms}")
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, errors="replace", timeout=120, check=False
            )
        finally:
            data.unlink(missing_ok=True)
        return list(parse_script(out.stdout.splitlines()))

    def stop(self) -> None:
        """Stop perf and remove its files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in self.workdir.glob("window.data*"):
            path.unlink(missing_ok=True)
        self._log.unlink(missing_ok=True)
