"""In-process assembly and disassembly, symmetric like pwntools.

``disasm(data, arch, vma=0)`` uses capstone; ``asm(text, arch, vma=0)``
(free-form assembly) uses keystone where its wheel exists.  The cut intents
never depend on keystone: they are encoded by ``knockout.arch.<isa>``.

>>> [str(i) for i in disasm(bytes.fromhex("1c0080d2c0035fd6"), "arm64", vma=0x1000)]
['0x1000: mov x28, #0', '0x1004: ret']
"""

from __future__ import annotations

import functools
from typing import Any

from knockout._capstone import open_disassembler
from knockout.arch import Arch, get_arch
from knockout.errors import BadInput, NotFound
from knockout.insn import Encoded, Insn

__all__ = ["Encoded", "Insn", "asm", "disasm"]




def disasm(data: bytes, arch: Arch | str, vma: int = 0) -> list[Insn]:
    """Decode ``data`` as if it were at ``vma``; stops at the first undecodable byte.

    Use :func:`knockout.asm.disasm` results' ``end`` to see how much decoded.
    """
    a = get_arch(arch)
    decode = open_disassembler(*a.capstone)
    return [
        Insn(address, bytes(data[address - vma : address - vma + size]), mnemonic, op_str)
        for address, size, mnemonic, op_str in decode(bytes(data), vma)
    ]


@functools.cache
def _keystone(arch: Arch) -> Any:
    try:
        import keystone
    except ImportError:
        raise NotFound(
            "free-form assembly needs keystone: run '.venv/bin/pip install keystone-engine' "
            "(it has no wheel for aarch64 hosts; cut intents do not need it)"
        ) from None
    ks_arch, ks_mode = arch.keystone
    return keystone.Ks(getattr(keystone, ks_arch), getattr(keystone, ks_mode))


def _statements(text: str) -> list[tuple[int, str]]:
    """``(line number, statement)`` for every non-empty statement of ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for stmt in line.split(";"):
            stmt = stmt.split("//")[0].strip()  # aarch64 comments; '#' is an immediate there
            if stmt:
                out.append((number, stmt))
    return out


def _assembly_error(ks: Any, text: str, vma: int, message: str) -> BadInput:
    """Find the statement keystone rejects on its own and name it."""
    import keystone

    for number, stmt in _statements(text):
        try:
            ks.asm(stmt, vma)
        except keystone.KsError as exc:
            if exc.errno != keystone.KS_ERR_ASM_SYMBOL_MISSING:
                return BadInput(f"line {number}: {stmt!r}: {exc.message}; fix that statement")
    return BadInput(f"cannot assemble {text!r}: {message}; check labels and syntax")


def asm(text: str, arch: Arch | str, vma: int = 0) -> bytes:
    """Assemble ``text`` (Intel syntax on x86_64) as if it were at ``vma``.

    Statements are separated by newlines or ``;``.  Uses keystone in-process;
    an error names the offending line.

    >>> asm("mov x28, #0; ret", "arm64").hex()
    '1c0080d2c0035fd6'
    """
    a = get_arch(arch)
    ks = _keystone(a)
    import keystone

    try:
        encoding, _count = ks.asm(text, vma)
    except keystone.KsError as exc:
        raise _assembly_error(ks, text, vma, exc.message) from None
    if not encoding:
        raise BadInput(f"{text!r} assembles to nothing; write at least one instruction")
    return bytes(encoding)
