"""A small ctypes wrapper over ptrace(2) and waitpid(2): just what a live cut needs.

``PTRACE_SEIZE`` and ``PTRACE_INTERRUPT`` stop a thread without sending it a
signal; ``PTRACE_GETREGSET``/``NT_PRSTATUS`` reads its registers (the
``user_regs`` layout of :attr:`knockout.arch.Arch.regs`); ``PTRACE_SINGLESTEP``
moves it one instruction; ``PTRACE_DETACH`` lets it go.  Failures raise :class:`OSError`
with the errno; :mod:`knockout.targets.process` turns them into
:mod:`knockout.errors` exceptions that say how to fix them.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass

from knockout.arch import Arch

__all__ = [
    "PTRACE_EVENT_STOP",
    "Regs",
    "Stop",
    "detach",
    "get_regs",
    "interrupt",
    "seize",
    "singlestep",
    "wait_stop",
]

PTRACE_SINGLESTEP = 9
PTRACE_DETACH = 17
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
NT_PRSTATUS = 1
WALL = 0x40000000  # __WALL: wait for clone children (threads) too

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _call(request: int, tid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> int:
    ctypes.set_errno(0)
    result = int(_ptrace(request, tid, ctypes.c_void_p(addr), data))
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, f"ptrace({request:#x}, {tid}): {os.strerror(err)}")
    return result


def seize(tid: int) -> None:
    """Become the tracer of ``tid`` without stopping it (``PTRACE_SEIZE``)."""
    _call(PTRACE_SEIZE, tid)


def interrupt(tid: int) -> None:
    """Ask a seized thread to stop (``PTRACE_INTERRUPT``); :func:`wait_stop` collects it."""
    _call(PTRACE_INTERRUPT, tid)


def singlestep(tid: int, signal: int = 0) -> None:
    """Resume a stopped thread for one instruction."""
    _call(PTRACE_SINGLESTEP, tid, 0, signal)


def detach(tid: int, signal: int = 0) -> None:
    """Let a stopped thread go, delivering ``signal`` if non-zero."""
    _call(PTRACE_DETACH, tid, 0, signal)


@dataclass(frozen=True)
class Regs:
    """The registers of a stopped thread that a cut cares about."""

    pc: int
    sp: int
    #: the return-value register (rax / x0), signed
    ret: int
    #: the syscall number if stopped in one, else -1 (x86_64 ``orig_rax``); None where
    #: the register set has no such field (aarch64)
    orig: int | None
    #: aarch64 x30, the link register (a return address); x86_64: 0
    link: int = 0


def _signed(word: int) -> int:
    return word - (1 << 64) if word >= 1 << 63 else word


def get_regs(tid: int, arch: Arch) -> Regs:
    """Read a stopped thread's registers with ``PTRACE_GETREGSET``/``NT_PRSTATUS``."""
    layout = arch.regs
    buf = (ctypes.c_uint64 * layout.words)()
    iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), ctypes.sizeof(buf))
    _call(PTRACE_GETREGSET, tid, NT_PRSTATUS, ctypes.cast(ctypes.pointer(iov), ctypes.c_void_p))
    return Regs(
        pc=buf[layout.pc],
        sp=buf[layout.sp],
        ret=_signed(buf[layout.ret]),
        orig=None if layout.orig is None else _signed(buf[layout.orig]),
        link=0 if layout.link is None else buf[layout.link],
    )


@dataclass(frozen=True)
class Stop:
    """What :func:`wait_stop` saw: a stop (with its signal and ptrace event) or an exit."""

    exited: bool
    signal: int = 0
    event: int = 0

    @property
    def is_event_stop(self) -> bool:
        """A ``PTRACE_EVENT_STOP`` (interrupt or group-stop), not a signal delivery."""
        return self.event == PTRACE_EVENT_STOP


def _decode(status: int) -> Stop:
    if os.WIFSTOPPED(status):
        return Stop(exited=False, signal=os.WSTOPSIG(status), event=(status >> 16) & 0xFF)
    return Stop(exited=True)


def wait_stop(tid: int, timeout: float) -> Stop | None:
    """Wait up to ``timeout`` seconds for ``tid`` to stop or exit; ``None`` on timeout.

    Polls ``waitpid(tid, WNOHANG | __WALL)`` so that a thread stuck in
    uninterruptible sleep cannot hang knockout; only ``tid`` is ever reaped.
    """
    deadline = time.monotonic() + timeout
    pause = 10e-6
    while True:
        try:
            pid, status = os.waitpid(tid, os.WNOHANG | WALL)
        except ChildProcessError:
            return Stop(exited=True)
        if pid == tid:
            return _decode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 5e-4)
