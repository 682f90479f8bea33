"""Targets a cut can be applied to: a running process, or the running kernel.

Every target implements :class:`Target`, and says what else it can do in
its :class:`Abilities`, which callers check *before* they write anything.
:func:`cut` is the one way the rest of knockout applies a cut: a context
manager that always reverts.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from knockout.arch import Arch, CodeStyle
from knockout.cuts import Cut

if TYPE_CHECKING:
    from knockout.symbols import SymbolTable

__all__ = ["Abilities", "AppliedCut", "Outcome", "Target", "cut", "reverting_on_signals"]


@dataclass(frozen=True)
class Abilities:
    """What a target can do besides reading, applying and reverting."""

    #: a cut may be left in place when knockout exits (``cut --detach``), journaled
    detach: bool
    #: what undoes a cut if knockout dies without reverting it, in words
    dead_man: str
    #: the target is the kernel: a new oops or warning in its log is evidence against a cut
    kernel_text: bool = False


@dataclass(frozen=True)
class Outcome:
    """What ``knockout revert --all`` did with one recorded cut."""

    #: "reverted", "cleared" (the process is gone or its pid recycled: untouched),
    #: "held" (a live knockout holds it and will revert it) or "failed"
    status: str
    message: str

    @property
    def ok(self) -> bool:
        """The cut is no longer in place."""
        return self.status in ("reverted", "cleared")


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
    def pid(self) -> int | None:
        """The process cut, or None for the kernel."""
        ...

    @property
    def description(self) -> str:
        """Human name, e.g. ``pid 1234 (/usr/bin/app)``; stored in :attr:`Cut.target`."""
        ...

    @property
    def abilities(self) -> Abilities:
        """What else this target can do (check before writing)."""
        ...

    def code_style(self) -> CodeStyle:
        """How this target writes a cut (in place, or a jump to a stub); the planner follows it."""
        ...

    def alive(self) -> bool:
        """The target still runs (a process with the same pid and start time; the kernel)."""
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

    def in_place(self, applied: AppliedCut) -> str | None:
        """None if ``applied`` is still in place exactly as written; else why not, in one line.

        A trial calls this at the end of every cut window: a window whose cut
        was not in place the whole time measured the wrong thing.
        """
        ...

    def leave(self, applied: AppliedCut) -> AppliedCut:
        """Leave the cut in place after knockout exits (only if ``abilities.detach``)."""
        ...

    def close(self) -> None:
        """Revert what this target still holds and release its resources."""
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
