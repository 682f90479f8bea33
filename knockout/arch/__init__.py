"""The architecture table: one entry per ISA knockout can cut.

Like pwntools' ``context.arch`` table, but an explicit value, never global
state: every function that depends on the ISA takes an :class:`Arch`.

>>> get_arch("amd64").name
'x86_64'
>>> get_arch("arm64").insn_align
4
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from knockout.errors import BadInput

__all__ = ["ARCHES", "Arch", "check_range", "get_arch", "host_arch"]


@dataclass(frozen=True)
class Arch:
    """Facts about one instruction set that do not depend on any target."""

    name: str
    aliases: tuple[str, ...]
    bits: int
    endian: str  # "little" or "big"
    elf_machine: str  # pyelftools' e_machine name
    llvm_triple: str
    insn_align: int  # every instruction starts at a multiple of this
    max_insn_len: int
    #: general-purpose registers a ``set REG=V`` cut may name, by canonical name
    registers: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return self.name


_X86_64_REGS = frozenset(
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"]
    + [f"r{i}" for i in range(8, 16)]
    + ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp"]
    + [f"r{i}d" for i in range(8, 16)]
)
_AARCH64_REGS = frozenset([f"x{i}" for i in range(31)] + [f"w{i}" for i in range(31)])

ARCHES: tuple[Arch, ...] = (
    Arch(
        name="x86_64",
        aliases=("x86_64", "amd64", "x86-64", "x64"),
        bits=64,
        endian="little",
        elf_machine="EM_X86_64",
        llvm_triple="x86_64-linux-gnu",
        insn_align=1,
        max_insn_len=15,
        registers=_X86_64_REGS,
    ),
    Arch(
        name="aarch64",
        aliases=("aarch64", "arm64"),
        bits=64,
        endian="little",
        elf_machine="EM_AARCH64",
        llvm_triple="aarch64-linux-gnu",
        insn_align=4,
        max_insn_len=4,
        registers=_AARCH64_REGS,
    ),
)


def get_arch(name: str | Arch) -> Arch:
    """Return the table entry for an architecture name or alias (case-insensitive)."""
    if isinstance(name, Arch):
        return name
    wanted = name.strip().lower()
    for arch in ARCHES:
        if wanted in arch.aliases:
            return arch
    known = ", ".join(a for arch in ARCHES for a in arch.aliases)
    raise BadInput(f"unknown architecture {name!r}; use one of: {known}")


def host_arch() -> Arch:
    """The architecture this Python runs on."""
    return get_arch(platform.machine())


def check_range(value: int, bits: int, what: str) -> int:
    """``value`` as an unsigned ``bits``-bit pattern, or BadInput naming the range.

    Both signed and unsigned spellings are accepted: ``-1`` and ``0xff`` are
    the same 8-bit pattern.

    >>> hex(check_range(-1, 8, "al"))
    '0xff'
    """
    low, high = -(1 << (bits - 1)), (1 << bits) - 1
    if not low <= value <= high:
        raise BadInput(
            f"{value:#x} does not fit {what} ({bits} bits); use a value in {low:#x}..{high:#x}"
        )
    return value & ((1 << bits) - 1)
