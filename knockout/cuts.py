"""Cut intents and the :class:`Cut` value.

A cut is a value before it is an action: where, which bytes are there now,
which bytes replace them and why.  Nothing in this module writes anywhere.

The intents are the seed engineer's vocabulary:

* :class:`Return` -- return a value at a function's entry;
* :class:`SetReg` -- force a register to a value in place of one instruction;
* :class:`Skip` -- skip one instruction;
* :class:`SkipCall` -- skip a call, optionally setting the return register;
* :class:`RawBytes` -- write these exact bytes;
* :class:`Identity` -- write the bytes that are already there (an A/A cut,
  used to calibrate noise: every step of a real cut, no change in behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass

from knockout.arch import Arch

__all__ = [
    "Cut",
    "Identity",
    "Intent",
    "RawBytes",
    "Return",
    "SetReg",
    "Skip",
    "SkipCall",
    "describe_intent",
]


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
class RawBytes:
    """Write exactly these bytes (they must cover whole instructions)."""

    data: bytes


@dataclass(frozen=True)
class Identity:
    """Write the bytes already there: an A/A cut for calibrating noise."""


Intent = Return | SetReg | Skip | SkipCall | RawBytes | Identity


def describe_intent(intent: Intent) -> str:
    """The CLI spelling of an intent.

    >>> describe_intent(SetReg("x28", 0))
    '--set x28=0'
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

    def reversed(self) -> Cut:
        """The cut that puts the original bytes back."""
        return Cut(
            target=self.target,
            arch=self.arch,
            address=self.address,
            location=self.location,
            old=self.new,
            new=self.old,
            intent=RawBytes(self.old),
            instructions=self.instructions,
        )
