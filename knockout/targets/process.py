"""Cutting a running process: every thread stopped, bytes verified, journaled, reverted.

The protocol, for apply and revert alike:

1. refuse unless ``[address, end)`` lies in one executable mapping;
2. record the cut in the :mod:`journal <knockout.journal>` *before* any byte
   changes (pid + start time, old and new bytes);
3. ``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT`` every thread, rescanning
   ``/proc/PID/task`` until no new thread appears;
4. single-step any thread whose pc lies strictly inside the bytes being
   replaced (at most ``step_limit`` steps, else refuse);
5. verify the bytes there are the expected ones, write through
   ``/proc/PID/mem``, read back and compare (on a mismatch the original
   bytes are written back);
6. detach, re-delivering any signal that arrived meanwhile.

>>> target = ProcessTarget(pid)                        # doctest: +SKIP
>>> with knockout.cut(target, plan_at(target, "compute", Return(0))):  # doctest: +SKIP
...     measure()
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from knockout import ptrace
from knockout.arch import Arch, CodeStyle, arch_for_elf_machine, arches
from knockout.asm import disasm
from knockout.cuts import Cut, RawBytes, describe_intent
from knockout.errors import BadInput, KnockoutError, NotFound, Refused, TargetGone, UnsafeCut
from knockout.guardian import ensure_guardian
from knockout.journal import Entry, Journal, self_identity, start_time
from knockout.symbols import SymbolTable, process_symbols
from knockout.targets import Abilities, AppliedCut, Outcome

__all__ = ["ProcessTarget", "explain_ptrace_refusal", "revert_journaled"]

#: -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK
_RESTART_CODES = frozenset({-512, -513, -514, -516})
_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: bytes of each thread's stack searched for return addresses into a cut
STACK_SCAN = 64 * 1024


def _read_proc(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text()


def _status_field(status: str, name: str) -> str | None:
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def explain_ptrace_refusal(
    pid: int, tracer: int, tracer_comm: str, yama: int | None, euid: int, owner: int | None
) -> str:
    """The one-line reason (and fix) why tracing ``pid`` was refused."""
    if tracer and tracer != os.getpid():
        return (
            f"pid {pid} is already traced by pid {tracer} ({tracer_comm}); "
            "detach that tracer (quit gdb/strace) and retry"
        )
    if yama == 3:
        return (
            "ptrace is disabled by Yama (kernel.yama.ptrace_scope=3) until reboot; "
            "process cuts are impossible on this boot"
        )
    if euid != 0 and owner is not None and owner != euid:
        return (
            f"no permission to trace pid {pid} (owned by uid {owner}); "
            f"run knockout as root or as uid {owner}"
        )
    if euid != 0 and yama in (1, 2):
        return (
            f"ptrace of pid {pid} refused by Yama (kernel.yama.ptrace_scope={yama}); run "
            "knockout as root (CAP_SYS_PTRACE) or 'sysctl kernel.yama.ptrace_scope=0'"
        )
    return (
        f"ptrace of pid {pid} refused (setuid target, other user namespace or LSM?); "
        "run knockout as root in the target's namespace"
    )


def _diagnose(pid: int) -> Refused:
    try:
        status = _read_proc(pid, "status")
    except OSError:
        status = ""
    tracer = int(_status_field(status, "TracerPid") or 0)
    try:
        tracer_comm = _read_proc(tracer, "comm").strip() if tracer else ""
    except OSError:
        tracer_comm = "?"
    try:
        yama: int | None = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except OSError:
        yama = None
    uid = _status_field(status, "Uid")
    owner = int(uid.split()[1]) if uid else None  # effective uid of the target
    return Refused(explain_ptrace_refusal(pid, tracer, tracer_comm, yama, os.geteuid(), owner))


def _no_exe(pid: int) -> BadInput:
    live = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    if live:
        return BadInput(
            f"the main thread of pid {pid} has exited, and its memory with it; "
            f"reach the process through a live thread: --pid {live[0]}"
        )
    return BadInput(f"pid {pid} has no executable (a kernel thread?); cut the kernel with --kernel")


def _process_arch(pid: int) -> Arch:
    try:
        with open(f"/proc/{pid}/exe", "rb") as f:
            header = f.read(20)
    except FileNotFoundError:
        raise _no_exe(pid) from None
    except PermissionError:
        raise _diagnose(pid) from None
    if header[:4] != b"\x7fELF" or header[4] != 2:
        raise BadInput(f"pid {pid} is not a 64-bit ELF process; knockout cuts 64-bit code only")
    arch = arch_for_elf_machine(int.from_bytes(header[18:20], "little"))
    if arch is None:
        known = ", ".join(a.name for a in arches())
        raise BadInput(f"pid {pid} runs an ISA knockout cannot cut; supported: {known}")
    return arch


def _restorable(found: bytes, entry: Entry) -> bytes:
    """The bytes a revert may write over: the cut's, or (after a write that a SIGKILL
    cut short) any mix of the cut's and the original's, byte by byte."""
    if all(f in (o, n) for f, o, n in zip(found, entry.old, entry.new, strict=True)):
        return found
    return entry.new  # the revert refuses: "expected <the cut's bytes>"


@dataclass
class _Thread:
    tid: int
    stopped: bool = False
    #: signals that arrived while stopped: re-delivered on detach
    signals: list[int] = field(default_factory=list)


class ProcessTarget:
    """A running process as a :class:`~knockout.targets.Target`.

    ``ProcessTarget(pid)`` checks that the process exists and may be traced;
    ``journal`` defaults to :func:`knockout.journal.default_journal_dir`.
    ``step_limit`` bounds the single-steps taken to move one thread out of
    the bytes being replaced; ``stop_timeout`` bounds each wait for a thread.
    ``guardian=False`` starts no guardian (:mod:`knockout.guardian`): a cut of
    a knockout killed with SIGKILL then stays until ``knockout revert --all``.
    """

    abilities = Abilities(
        detach=True,
        dead_man="a guardian process reverts the cut within a second of knockout's death",
    )

    def __init__(
        self,
        pid: int,
        *,
        journal: Journal | None = None,
        step_limit: int = 64,
        stop_timeout: float = 5.0,
        guardian: bool = True,
    ) -> None:
        started = start_time(pid)
        if started is None:
            raise NotFound(f"no process with pid {pid}; check the pid with 'ps -e'")
        self.pid = pid
        self.start_time = started
        self.arch = _process_arch(pid)
        self.journal = journal or Journal()
        self.step_limit = step_limit
        self.stop_timeout = stop_timeout
        self.guardian = guardian
        #: cuts applied through this target and not yet reverted, by journal key
        self._held: dict[str, AppliedCut] = {}
        #: single-steps taken so far to move threads out of cuts (for tests and benchmarks)
        self.steps_taken = 0
        #: signals that arrived while threads were stopped and were delivered on detach
        self.signals_redelivered = 0
        try:
            os.close(os.open(f"/proc/{pid}/mem", os.O_RDONLY))
        except PermissionError:
            raise _diagnose(pid) from None
        try:
            self.exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            self.exe = "?"

    @property
    def description(self) -> str:
        """``pid 1234 (/usr/bin/app)``."""
        return f"pid {self.pid} ({self.exe})"

    def alive(self) -> bool:
        """The process this target was opened on still runs (same pid and start time)."""
        return start_time(self.pid) == self.start_time

    def _gone(self) -> TargetGone:
        return TargetGone(f"pid {self.pid} exited; nothing left to cut or revert")

    def read(self, address: int, size: int) -> bytes:
        """The bytes at ``address`` now, through ``/proc/PID/mem``."""
        try:
            fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError):  # gone, or a zombie not yet reaped
            raise self._gone() from None
        try:
            return self._pread(fd, address, size)
        finally:
            os.close(fd)

    def _pread(self, fd: int, address: int, size: int) -> bytes:
        try:
            data = os.pread(fd, size, address)
        except OSError as exc:
            data = b""
            if exc.errno not in (errno.EIO, errno.EFAULT):
                raise
        if len(data) != size:
            if not self.alive():
                raise self._gone()
            raise NotFound(f"pid {self.pid} has no memory at {address:#x}; check the address")
        return data

    def symbols(self) -> SymbolTable:
        """The symbols of every ELF file mapped by the process."""
        return process_symbols(self.pid)

    def code_style(self) -> CodeStyle:
        """Process cuts are written in place."""
        return CodeStyle()

    # -- checks -------------------------------------------------------------

    def _check_executable(self, start: int, end: int) -> None:
        try:
            maps = _read_proc(self.pid, "maps")
        except FileNotFoundError:
            raise self._gone() from None
        for line in maps.splitlines():
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= start < high:
                if "x" in fields[1] and end <= high:
                    return
                where = fields[5] if len(fields) > 5 else "anonymous memory"
                break
        else:
            where = "no mapping"
        raise UnsafeCut(
            f"{start:#x}..{end:#x} is not in an executable mapping of pid {self.pid} "
            f"({where}); cut a function's code, e.g. SYMBOL or SYMBOL+OFFSET"
        )

    def _check_cut(self, cut: Cut) -> None:
        if cut.arch is not self.arch:
            raise BadInput(f"the cut is for {cut.arch}, pid {self.pid} runs {self.arch}; replan it")
        if not cut.old or len(cut.old) != len(cut.new):
            raise BadInput(
                "a cut's old and new bytes must be non-empty and equally long; replan it"
            )
        self._check_executable(cut.address, cut.end)
        for entry in self.journal.entries(self.pid):
            if entry.start_time == self.start_time and (
                entry.address < cut.end and cut.address < entry.end
            ):
                raise UnsafeCut(
                    f"{cut.location} overlaps the cut at {entry.location} ({entry.address:#x}) "
                    f"already in pid {self.pid}; revert it first"
                )

    # -- stopping every thread ----------------------------------------------

    def _tids(self) -> set[int]:
        try:
            return {int(name) for name in os.listdir(f"/proc/{self.pid}/task")}
        except FileNotFoundError:
            raise self._gone() from None

    def _seize(self, tid: int, threads: dict[int, _Thread]) -> None:
        try:
            ptrace.seize(tid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return  # the thread exited meanwhile
            if exc.errno == errno.EPERM and not self._exiting(tid, threads):
                raise _diagnose(self.pid) from None
            if exc.errno == errno.EPERM:
                return  # the thread is exiting: it runs no more user code
            raise
        threads[tid] = _Thread(tid)
        with contextlib.suppress(ProcessLookupError):  # exited: _collect sees it
            ptrace.interrupt(tid)

    def _exiting(self, tid: int, threads: dict[int, _Thread]) -> bool:
        """Whether EPERM from PTRACE_SEIZE means the thread is exiting, not a refusal.

        A zombie thread (e.g. a leader that called pthread_exit) is exiting;
        so is one refused once other threads were seized fine, unless
        another tracer holds it.
        """
        try:
            status = _read_proc(self.pid, f"task/{tid}/status")
        except OSError:
            return True  # gone already
        state = _status_field(status, "State") or ""
        if state[:1] in ("Z", "X"):
            return True
        return bool(threads) and int(_status_field(status, "TracerPid") or 0) in (0, os.getpid())

    def _collect(self, thread: _Thread) -> None:
        stop = ptrace.wait_stop(thread.tid, self.stop_timeout)
        if stop is None:
            raise Refused(
                f"thread {thread.tid} of pid {self.pid} did not stop within "
                f"{self.stop_timeout:g} s (uninterruptible sleep?); retry when it is runnable"
            )
        if stop.exited:
            return
        thread.stopped = True
        if not stop.is_event_stop:
            thread.signals.append(stop.signal)

    def _attach_all(self, threads: dict[int, _Thread]) -> None:
        tried: set[int] = set()
        while True:
            new = self._tids() - tried
            if not new:
                break
            tried |= new
            for tid in sorted(new):
                self._seize(tid, threads)
            for tid in sorted(new & threads.keys()):
                self._collect(threads[tid])
            if not any(t.stopped for t in threads.values()) and not self.alive():
                raise self._gone()

    def _release(self, thread: _Thread) -> None:
        # seized but never seen stopped: wait for its pending stop, then let go;
        # if it never stops it stays seized until knockout exits (the kernel detaches it)
        if not thread.stopped and ptrace.wait_stop(thread.tid, self.stop_timeout) is None:
            return
        first, *rest = thread.signals or [0]
        self.signals_redelivered += len(thread.signals)
        try:
            ptrace.detach(thread.tid, first)
        except ProcessLookupError:
            # Killed while stopped: a traced thread reports its exit to us, the
            # tracer. Reap it, or its process can never be reaped by its parent.
            _reap(thread.tid, self.stop_timeout)
            return
        with contextlib.suppress(ProcessLookupError):
            for sig in rest:
                os.kill(self.pid, sig)

    @contextlib.contextmanager
    def _stopped(self) -> Iterator[list[_Thread]]:
        """Every thread of the process in a ptrace-stop for the ``with`` block."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        threads: dict[int, _Thread] = {}
        try:
            self._attach_all(threads)
            yield [t for t in threads.values() if t.stopped]
        finally:
            for thread in threads.values():
                self._release(thread)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    # -- single-stepping out of the cut ---------------------------------------

    def _resume_pcs(self, regs: ptrace.Regs) -> set[int]:
        """Where the thread will execute next: its pc, or the syscall it will restart."""
        pcs = {regs.pc}
        if regs.ret in _RESTART_CODES and self.arch.may_restart_syscall(regs.orig):
            pcs.add(regs.pc - self.arch.syscall_insn_len)
        return pcs

    def _inside(self, tid: int, start: int, end: int) -> bool:
        regs = ptrace.get_regs(tid, self.arch)
        return any(start < pc < end for pc in self._resume_pcs(regs))

    def _interior_returns(self, cut: Cut, code: bytes) -> set[int]:
        """Return addresses strictly inside the cut: of calls ``code`` makes before its end."""
        calls = (i for i in disasm(code, self.arch, vma=cut.address) if self.arch.is_call(i))
        return {i.end for i in calls if i.end < cut.end}

    def _stack_words(self, fd: int, sp: int) -> list[int]:
        """Up to :data:`STACK_SCAN` bytes of stack above ``sp`` (the read stops at a hole)."""
        try:
            data = os.pread(fd, STACK_SCAN, sp)
        except OSError:
            return []
        usable = len(data) - len(data) % 8
        return [w for (w,) in struct.iter_unpack("<Q", data[:usable])]

    def _check_returns(self, threads: list[_Thread], cut: Cut, code: bytes) -> None:
        """Refuse if a thread would return into the middle of the cut.

        A call inside the replaced bytes (not their last instruction) leaves
        its return address strictly inside them; a thread still in the callee
        would come back to the middle of the new code.  Its stack (and
        aarch64's link register) is scanned for such an address.
        """
        returns = self._interior_returns(cut, code)
        if not returns:
            return
        fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY)
        try:
            for thread in threads:
                regs = ptrace.get_regs(thread.tid, self.arch)
                words = {regs.link, *self._stack_words(fd, regs.sp)}
                if words & returns:
                    raise UnsafeCut(
                        f"thread {thread.tid} of pid {self.pid} is in a call made from inside "
                        f"{cut.location} and would return into the cut; nothing written, retry "
                        "or cut fewer instructions"
                    )
        finally:
            os.close(fd)

    def _step_out(self, thread: _Thread, cut: Cut) -> None:
        for _ in range(self.step_limit):
            try:
                if not self._inside(thread.tid, cut.address, cut.end):
                    return
                ptrace.singlestep(thread.tid)
                self.steps_taken += 1
            except ProcessLookupError:
                thread.stopped = False
                return  # the thread exited
            stop = ptrace.wait_stop(thread.tid, self.stop_timeout)
            if stop is None:
                thread.stopped = False
                raise UnsafeCut(
                    f"thread {thread.tid} of pid {self.pid} is blocked in a system call "
                    f"inside {cut.location}; nothing written, retry or cut elsewhere"
                )
            if stop.exited:
                thread.stopped = False
                return
            if not stop.is_event_stop and stop.signal != signal.SIGTRAP:
                thread.signals.append(stop.signal)
        raise UnsafeCut(
            f"thread {thread.tid} of pid {self.pid} stayed inside {cut.location} for "
            f"{self.step_limit} single-steps (a tight loop?); nothing written, cut elsewhere"
        )

    # -- the write ----------------------------------------------------------

    def _swap(self, cut: Cut, expect: bytes, write: bytes) -> None:
        """With every thread stopped: verify ``expect``, write, read back; all or nothing."""
        try:
            fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR)
        except FileNotFoundError:
            raise self._gone() from None
        try:
            found = self._pread(fd, cut.address, len(expect))
            if found != expect:
                raise UnsafeCut(
                    f"bytes at {cut.location} ({cut.address:#x}) are {found.hex(' ')}, "
                    f"expected {expect.hex(' ')} (code changed); nothing written, replan the cut"
                )
            self._pwrite(fd, cut, write)
            if self._pread(fd, cut.address, len(write)) != write:
                self._pwrite(fd, cut, expect)
                raise UnsafeCut(
                    f"read-back at {cut.location} differs from what was written; "
                    "original bytes restored, retry"
                )
        finally:
            os.close(fd)

    def _pwrite(self, fd: int, cut: Cut, data: bytes) -> None:
        try:
            written = os.pwrite(fd, data, cut.address)
        except OSError as exc:
            if not self.alive():
                raise self._gone() from None
            raise Refused(
                f"writing {cut.address:#x} in pid {self.pid} failed: {exc.strerror}; "
                "check that the kernel allows /proc/PID/mem writes"
            ) from None
        if written != len(data):
            raise Refused(f"short write at {cut.address:#x} in pid {self.pid}; retry")

    def _rewrite(self, cut: Cut, expect: bytes, write: bytes) -> None:
        try:
            with self._stopped() as threads:
                for thread in threads:
                    self._step_out(thread, cut)
                self._check_returns([t for t in threads if t.stopped], cut, expect)
                self._swap(cut, expect, write)
        except ProcessLookupError:
            if self.alive():
                raise Refused(
                    f"a thread of pid {self.pid} vanished while knockout held it stopped; "
                    "nothing was left half-written, retry"
                ) from None
            raise self._gone() from None

    # -- the Target protocol ------------------------------------------------

    def _entry(self, cut: Cut) -> Entry:
        holder_pid, holder_start = self_identity()
        return Entry(
            pid=self.pid,
            start_time=self.start_time,
            address=cut.address,
            old=cut.old,
            new=cut.new,
            location=cut.location,
            intent=describe_intent(cut.intent),
            target=self.description,
            arch=self.arch.name,
            holder_pid=holder_pid,
            holder_start=holder_start,
        )

    def apply(self, cut: Cut) -> AppliedCut:
        """Verify ``cut.old`` is there, journal the cut, write ``cut.new``, read back."""
        self._check_cut(cut)
        found = self.read(cut.address, cut.size)
        if found != cut.old:
            raise UnsafeCut(
                f"bytes at {cut.location} ({cut.address:#x}) are {found.hex(' ')}, expected "
                f"{cut.old.hex(' ')} (the binary changed?); nothing written, replan the cut"
            )
        if self.guardian:
            ensure_guardian(self.journal)
        entry = self.journal.add(self._entry(cut))
        try:
            self._rewrite(cut, cut.old, cut.new)
        except BaseException:
            self._undo_partial(cut, entry)
            raise
        applied = AppliedCut(cut, handle=entry, mechanism="ptrace")
        self._held[entry.key] = applied
        return applied

    def _undo_partial(self, cut: Cut, entry: Entry) -> None:
        """After an apply that failed or was interrupted (Ctrl-C once the bytes were
        written): put the original back if the new bytes are there, then drop the
        journal entry -- unless the original cannot be confirmed, for ``revert --all``."""
        try:
            there = self.read(cut.address, cut.size) if self.alive() else cut.old
            if there != cut.old and there == cut.new:
                self._rewrite(cut, cut.new, cut.old)
            original = not self.alive() or self.read(cut.address, cut.size) == cut.old
        except TargetGone:
            original = True
        except KnockoutError:
            original = False
        if original:
            self.journal.remove(entry)

    def leave(self, applied: AppliedCut) -> AppliedCut:
        """Leave the cut in place after knockout exits (``--detach``); revert ends it."""
        entry: Entry = replace(applied.handle, holder_pid=None, holder_start=None)
        self.journal.replace(entry)
        self._held.pop(entry.key, None)
        return AppliedCut(applied.cut, handle=entry, mechanism=applied.mechanism)

    def revert(self, applied: AppliedCut) -> None:
        """Verify ``cut.new`` is still there, write ``cut.old`` back, read back, clear journal."""
        entry: Entry = applied.handle
        self._held.pop(entry.key, None)
        self.revert_entry(entry)

    def in_place(self, applied: AppliedCut) -> str | None:
        """None while the process runs and holds the cut's bytes; else why not."""
        cut = applied.cut
        if not self.alive():
            return f"pid {self.pid} exited while the cut at {cut.location} was in place"
        try:
            found = self.read(cut.address, cut.size)
        except KnockoutError as exc:
            return f"the cut at {cut.location} cannot be read back: {exc}"
        if found != cut.new:
            return (
                f"the cut at {cut.location} in pid {self.pid} was overwritten: "
                f"{found.hex(' ')} there, not {cut.new.hex(' ')}"
            )
        return None

    def close(self) -> None:
        """Revert every cut this target still holds (the gone process's are only cleared)."""
        for applied in list(self._held.values()):
            with contextlib.suppress(KnockoutError):
                self.revert(applied)

    def revert_entry(self, entry: Entry) -> None:
        """Put a journaled cut's original bytes back and forget it.

        Nothing is written unless the process is the one cut (pid *and* start
        time) and the bytes there are the ones the cut wrote.
        """
        if entry.pid != self.pid or entry.start_time != self.start_time or not self.alive():
            raise self._cleared_gone(entry)
        cut = Cut(
            target=entry.target,
            arch=self.arch,
            address=entry.address,
            location=entry.location,
            old=entry.new,
            new=entry.old,
            intent=RawBytes(entry.old),
            instructions=0,
        )
        try:
            found = self.read(entry.address, len(entry.old))
            if found != entry.old:
                self._rewrite(cut, _restorable(found, entry), entry.old)
        except TargetGone:
            raise self._cleared_gone(entry) from None
        self.journal.remove(entry)

    def _cleared_gone(self, entry: Entry) -> TargetGone:
        """Forget ``entry`` of a process that is gone; the error that says so."""
        self.journal.remove(entry)
        return TargetGone(
            f"pid {entry.pid} exited while the cut at {entry.location} was in place; "
            "nothing to revert, journal entry cleared"
        )


def _reap(tid: int, timeout: float) -> None:
    """Collect the exit of a traced thread that died while seized (bounded)."""
    deadline = time.monotonic() + timeout
    while (stop := ptrace.wait_stop(tid, max(0.0, deadline - time.monotonic()))) is not None:
        if stop.exited or time.monotonic() >= deadline:
            return


def _revert_one(entry: Entry, journal: Journal) -> Outcome:
    if entry.holder_alive():
        return Outcome(
            "held",
            f"the cut at {entry.location} in pid {entry.pid} is held by knockout pid "
            f"{entry.holder_pid}; stop that knockout (Ctrl-C) and it reverts the cut",
        )
    if not entry.target_alive():
        journal.remove(entry)
        return Outcome(
            "cleared",
            f"pid {entry.pid} (started at tick {entry.start_time}) is gone; "
            "entry cleared, nothing written",
        )
    try:
        ProcessTarget(entry.pid, journal=journal).revert_entry(entry)
    except TargetGone:
        return Outcome("cleared", f"pid {entry.pid} is gone; entry cleared")
    except KnockoutError as exc:
        return Outcome("failed", str(exc))
    restored = f"restored {entry.old.hex(' ')} at {entry.location} in pid {entry.pid}"
    return Outcome("reverted", restored)


def revert_journaled(
    journal: Journal | None = None,
    pid: int | None = None,
    *,
    only: set[str] | None = None,
) -> list[Outcome]:
    """Revert every journaled process cut no live knockout holds.

    Only ``pid``'s entries when given, only those whose :attr:`Entry.key` is
    in ``only`` when given.  Entries whose process is gone, or whose pid now
    belongs to another process (different start time), are cleared without
    touching anything.
    """
    journal = journal or Journal()
    entries = [e for e in journal.entries(pid) if only is None or e.key in only]
    return [_revert_one(entry, journal) for entry in entries]
