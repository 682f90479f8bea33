"""The instruction values every layer shares: a decoded :class:`Insn`, an :class:`Encoded` one.

They depend on nothing, so the architecture entries (``knockout.arch.*``),
the disassembler (:mod:`knockout.asm`) and the planner can all use them.

>>> i = Insn(0x1000, bytes.fromhex("31c0"), "xor", "eax, eax")
>>> str(i), i.end
('0x1000: xor eax, eax', 4098)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Encoded", "Insn", "joined", "text_of"]


@dataclass(frozen=True)
class Insn:
    """One decoded instruction."""

    address: int
    data: bytes
    mnemonic: str
    op_str: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        return self.address + len(self.data)

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    def __str__(self) -> str:
        return f"{self.address:#x}: {self.text}"


@dataclass(frozen=True)
class Encoded:
    """One instruction knockout encoded itself: its assembly text and its bytes."""

    text: str
    data: bytes


def joined(code: list[Encoded]) -> bytes:
    """The bytes of a sequence of encoded instructions.

    >>> joined([Encoded("nop", b"\\x90"), Encoded("ret", b"\\xc3")]).hex()
    '90c3'
    """
    return b"".join(e.data for e in code)


def text_of(code: list[Encoded]) -> str:
    """``'xor eax, eax; ret'``: the assembly of a sequence, for messages."""
    return "; ".join(e.text for e in code)
