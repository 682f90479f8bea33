"""In-process assembly and disassembly, symmetric like pwntools.

``disasm(data, arch, vma=0)`` uses capstone; ``asm(text, arch, vma=0)``
(free-form assembly) uses keystone where its wheel exists.  The cut intents
never depend on keystone: they are encoded by ``knockout.arch.<isa>``.

>>> [str(i) for i in disasm(bytes.fromhex("1c0080d2c0035fd6"), "arm64", vma=0x1000)]
['0x1000: mov x28, #0', '0x1004: ret']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import capstone

from knockout.arch import Arch, get_arch

__all__ = ["Insn", "disasm"]


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


_CAPSTONE = {
    "x86_64": (capstone.CS_ARCH_X86, capstone.CS_MODE_64),
    "aarch64": (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM),
}


@functools.cache
def _capstone(arch_name: str) -> capstone.Cs:
    cs_arch, cs_mode = _CAPSTONE[arch_name]
    cs = capstone.Cs(cs_arch, cs_mode)
    cs.detail = False
    return cs


def disasm(data: bytes, arch: Arch | str, vma: int = 0) -> list[Insn]:
    """Decode ``data`` as if it were at ``vma``; stops at the first undecodable byte.

    Use :func:`knockout.asm.disasm` results' ``end`` to see how much decoded.
    """
    a = get_arch(arch)
    return [
        Insn(address, bytes(data[address - vma : address - vma + size]), mnemonic, op_str)
        for address, size, mnemonic, op_str in _capstone(a.name).disasm_lite(data, vma)
    ]
