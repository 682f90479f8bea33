"""Cut intents and the :class:`Cut` value.

A cut is a value before it is an action: where, which bytes are there now,
which bytes replace them and why.  Nothing in this module writes anywhere.

The intents are the seed engineer's vocabulary:

* :class:`Return` -- return a value at a function's entry;
* :class:`SetReg` -- force a register to a value in place of one instruction;
* :class:`Skip` -- skip one instruction;
* :class:`SkipCall` -- skip a call, optionally setting the return register;
* :class:`ReturnAt` -- return from the middle of a function (the seed's
  "modify this instruction to GOTO END"): set the return register, jump to
  an epilogue whose stack state is the same;
* :class:`ForceBranch` -- a conditional branch always taken, or never;
* :class:`RawBytes` -- write these exact bytes;
* :class:`Identity` -- write the bytes that are already there (an A/A cut,
  used to calibrate noise: every step of a real cut, no change in behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass

from knockout.arch import Arch

__all__ = [
    "POINT_KINDS",
    "Cut",
    "ForceBranch",
    "Identity",
    "Intent",
    "RawBytes",
    "Return",
    "ReturnAt",
    "SetReg",
    "Skip",
    "SkipCall",
    "describe_intent",
]

#: the kinds of cut point a search lists in a function (``branch``: both ways of each
#: branch); defined here, light to import, for the CLI's choices
POINT_KINDS = ("entry", "return-at", "load", "skip-call", "branch")


@dataclass(frozen=True)
class Return:
    """Return ``value`` at the function's entry."""

    value: int = 0


@dataclass(frozen=True)
class SetReg:
    """Replace exactly one instruction by ``reg = value``."""

    reg: str
    value: int


@dataclass(frozen=True)
class Skip:
    """Replace one instruction by NOPs of the same length."""


@dataclass(frozen=True)
class SkipCall:
    """Replace one call instruction; if ``value`` is given the return register gets it."""

    value: int | None = None


@dataclass(frozen=True)
class ReturnAt:
    """Return from here: the return register gets ``value``, then a jump to ``epilogue``.

    ``value`` None leaves the return register alone (a ``void`` function).
    ``epilogue`` is the address of an epilogue of the same function: code
    that only restores what the prologue saved and returns; ``pop`` bytes
    of stack (locals the epilogue's own ``add sp`` would have freed before
    that point) are freed first, and the instructions at ``replay`` (the
    epilogue's own restores before a return value it sets, which the jump
    skips) are run from a copy.  The cut is right only where the stack
    state (the CFA rule and the saved registers) equals the epilogue's;
    :mod:`knockout.search` checks that from the unwind tables and fills
    ``epilogue``, ``pop`` and ``replay`` in (an ``epilogue`` of None: not
    chosen yet; the planner refuses it).
    """

    value: int | None = 0
    epilogue: int | None = None
    pop: int = 0
    replay: tuple[int, ...] = ()


@dataclass(frozen=True)
class ForceBranch:
    """A conditional branch made unconditional: always ``taken``, or never (it falls through)."""

    taken: bool


@dataclass(frozen=True)
class RawBytes:
    """Write exactly these bytes (they must cover whole instructions)."""

    data: bytes


@dataclass(frozen=True)
class Identity:
    """Write the bytes already there: an A/A cut for calibrating noise."""


Intent = Return | SetReg | Skip | SkipCall | ReturnAt | ForceBranch | RawBytes | Identity


def describe_intent(intent: Intent) -> str:
    """The CLI spelling of an intent.

    >>> describe_intent(SetReg("x28", 0))
    '--set x28=0'
    >>> describe_intent(ReturnAt(0, 0x1040)), describe_intent(ForceBranch(taken=False))
    ('--return-at 0', '--force-branch not-taken')
    """
    match intent:
        case Return(value):
            return f"--return {value}"
        case SetReg(reg, value):
            return f"--set {reg}={value}"
        case Skip():
            return "--skip"
        case SkipCall(value):
            return "--skip-call" if value is None else f"--skip-call {value}"
        case ReturnAt(value):
            return "--return-at" if value is None else f"--return-at {value}"
        case ForceBranch(taken):
            return f"--force-branch {'taken' if taken else 'not-taken'}"
        case RawBytes(data):
            return f"--bytes {data.hex()}"
        case Identity():
            return "--aa"
    raise AssertionError(intent)


@dataclass(frozen=True)
class Cut:
    """One planned rewrite of machine code; validated when it is built.

    ``old`` and ``new`` have the same length, start at ``address`` and end on
    an instruction boundary of the original code; ``instructions`` is how
    many original instructions ``old`` spans.  Build one with
    :func:`knockout.plan.plan_cut`, never by hand.
    """

    target: str  # e.g. "kernel 6.1.0-56-amd64", "pid 1234 (/usr/bin/app)"
    arch: Arch
    address: int
    location: str  # "shrink_slab+0x150"
    old: bytes
    new: bytes
    intent: Intent
    instructions: int

    @property
    def size(self) -> int:
        return len(self.old)

    @property
    def end(self) -> int:
        return self.address + len(self.old)
