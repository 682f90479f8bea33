"""Targets a cut can be applied to: a running process, or the running kernel.

Every target implements :class:`Target`.  :func:`cut` is the one way the
rest of knockout applies a cut: a context manager that always reverts.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from knockout.arch import Arch
from knockout.cuts import Cut
from knockout.symbols import SymbolTable

__all__ = ["AppliedCut", "Target", "cut", "reverting_on_signals"]


@dataclass
class AppliedCut:
    """A cut that is in place; ``handle`` is the target's own record of it."""

    cut: Cut
    handle: Any = None
    mechanism: str = "text"  # how it was applied, e.g. "ptrace", "text_poke_bp", "kprobe"
    extra: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    """What a place that can be cut offers."""

    arch: Arch

    @property
    def description(self) -> str:
        """Human name, e.g. ``pid 1234 (/usr/bin/app)``; stored in :attr:`Cut.target`."""
        ...

    def read(self, address: int, size: int) -> bytes:
        """The bytes at ``address`` now."""
        ...

    def symbols(self) -> SymbolTable:
        """The target's symbols (kallsyms for the kernel, mapped ELFs for a process)."""
        ...

    def apply(self, cut: Cut) -> AppliedCut:
        """Verify ``cut.old`` is there, write ``cut.new``, read back; all or nothing."""
        ...

    def revert(self, applied: AppliedCut) -> None:
        """Verify ``cut.new`` is still there, write ``cut.old`` back, read back."""
        ...


@contextlib.contextmanager
def reverting_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into ``KeyboardInterrupt`` so ``finally`` blocks run."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # ValueError: not the main thread, where the caller handles signals
        with contextlib.suppress(ValueError):
            saved[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def cut(target: Target, planned: Cut) -> Iterator[AppliedCut]:
    """Apply ``planned`` to ``target`` for the duration of the ``with`` block.

    The cut is reverted on normal exit, on exceptions, on Ctrl-C and on
    SIGTERM/SIGHUP.  (SIGKILL cannot be caught: the process target's journal
    and the kernel module's TTL cover that case.)
    """
    with reverting_on_signals():
        applied = target.apply(planned)
        try:
            yield applied
        finally:
            target.revert(applied)
