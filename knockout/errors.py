"""Exceptions raised by knockout's library code.

Every message says what is wrong *and what to do about it*, on one line.
Only the CLI (``knockout.cli``) turns these into output and exit codes:
any :class:`KnockoutError` becomes one line on stderr and exit status 2.

The classes also derive from the built-in exception a Python user would
expect (``ValueError`` for bad input, ``LookupError`` for an unknown name,
``PermissionError`` for a refusal), so callers may catch either.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "CutLost",
    "KnockoutError",
    "NotFound",
    "Refused",
    "TargetGone",
    "UnsafeCut",
]


class KnockoutError(Exception):
    """Base class of every error knockout raises on purpose."""


class BadInput(KnockoutError, ValueError):
    """The user asked for something malformed: bad hex, a register the arch lacks, ..."""


class NotFound(KnockoutError, LookupError):
    """A symbol, address, pid or file does not exist."""


class Refused(KnockoutError, PermissionError):
    """The system refused: no privilege, ptrace blocked, lockdown, ..."""


class UnsafeCut(KnockoutError, RuntimeError):
    """A cut would not be safe: bytes differ, not on an instruction boundary, ..."""


class CutLost(KnockoutError, RuntimeError):
    """A cut was not in place for a whole window (expired, overwritten): the window is void."""


class TargetGone(KnockoutError, ProcessLookupError):
    """The target process exited (or the guest died) while knockout worked on it."""
