"""x86_64 encoders for the cut intents, written by hand (no keystone).

Every encoder returns a list of :class:`knockout.asm.Encoded` -- the
assembly text it stands for and its bytes -- so tests can cross-check each
one against keystone and ``llvm-mc``.  Values are Python ints; a value is
taken modulo the register's width after a range check, so ``-1`` and
``0xffffffffffffffff`` mean the same 64-bit pattern.

Writes to a 32-bit register zero-extend into the 64-bit one, as the CPU
does; :func:`mov_imm` uses that to pick the shortest encoding.
"""

from __future__ import annotations

import re

from knockout.arch import check_range
from knockout.asm import Encoded, Insn
from knockout.errors import BadInput

__all__ = [
    "ENDBR64",
    "FENTRY_NOP",
    "INT3",
    "RET",
    "branch_target",
    "encode_return",
    "encode_skip_call",
    "is_call",
    "is_indirect_jump",
    "is_relative",
    "jmp_rel32",
    "load_rax",
    "mov_imm",
    "nops",
    "parse_reg",
    "relocate",
    "xor_eax",
]

ENDBR64 = bytes.fromhex("f30f1efa")
#: the 5-byte NOP ``-mfentry``/ftrace leaves at a function's entry
FENTRY_NOP = bytes.fromhex("0f1f440000")
INT3 = b"\xcc"
RET = b"\xc3"

#: the recommended multi-byte NOPs (Intel SDM vol. 2B, "NOP"), by length
_NOPS = {
    1: "90",
    2: "6690",
    3: "0f1f00",
    4: "0f1f4000",
    5: "0f1f440000",
    6: "660f1f440000",
    7: "0f1f8000000000",
    8: "0f1f840000000000",
    9: "660f1f840000000000",
}

_REG64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"] + [f"r{i}" for i in range(8, 16)]
_REG32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"] + [f"r{i}d" for i in range(8, 16)]

_BRANCHES = re.compile(r"^(j[a-z]+|call|loop[a-z]*|xbegin)$")
_IMMEDIATE = re.compile(r"^0x[0-9a-f]+$")


def nops(n: int) -> bytes:
    """``n`` bytes of canonical NOPs, longest first (9 bytes at most each)."""
    out = bytearray()
    while n > 0:
        chunk = min(n, 9)
        out += bytes.fromhex(_NOPS[chunk])
        n -= chunk
    return bytes(out)


def parse_reg(reg: str) -> tuple[int, int]:
    """``'rbx'`` -> ``(3, 64)``; ``'r9d'`` -> ``(9, 32)``; BadInput for anything else."""
    name = reg.strip().lower()
    if name in _REG64:
        return _REG64.index(name), 64
    if name in _REG32:
        return _REG32.index(name), 32
    raise BadInput(
        f"x86_64 has no general-purpose register {reg!r}; "
        "use one of rax..r15 (64-bit) or eax..r15d (32-bit)"
    )


def _mov32(n: int, value: int) -> Encoded:
    rex = b"\x41" if n >= 8 else b""
    data = rex + bytes([0xB8 + (n & 7)]) + value.to_bytes(4, "little")
    return Encoded(f"mov {_REG32[n]}, {value:#x}", data)


def _mov64_simm32(n: int, value: int) -> Encoded:
    rex = 0x48 | (1 if n >= 8 else 0)
    data = bytes([rex, 0xC7, 0xC0 + (n & 7)]) + value.to_bytes(4, "little", signed=True)
    return Encoded(f"mov {_REG64[n]}, {value}", data)


def _movabs(n: int, value: int) -> Encoded:
    rex = 0x48 | (1 if n >= 8 else 0)
    data = bytes([rex, 0xB8 + (n & 7)]) + value.to_bytes(8, "little")
    return Encoded(f"movabs {_REG64[n]}, {value:#x}", data)


def mov_imm(reg: str, value: int) -> list[Encoded]:
    """``reg = value`` in the shortest ``mov`` (flags untouched).

    A 32-bit register, or a 64-bit one with a value in 0..0xffffffff, gets
    ``mov r32, imm32`` (5-6 bytes, zero-extends); a negative value that
    sign-extends from 32 bits gets ``mov r64, simm32`` (7 bytes); anything
    else ``movabs r64, imm64`` (10 bytes).
    """
    n, bits = parse_reg(reg)
    pattern = check_range(value, bits, reg)
    if bits == 32 or pattern < 1 << 32:
        return [_mov32(n, pattern)]
    signed = pattern - (1 << 64)
    if signed >= -(1 << 31):
        return [_mov64_simm32(n, signed)]
    return [_movabs(n, pattern)]


def xor_eax() -> Encoded:
    """``xor eax, eax``: rax = 0 in two bytes (clobbers the flags)."""
    return Encoded("xor eax, eax", bytes.fromhex("31c0"))


def load_rax(value: int, *, compact: bool = False) -> list[Encoded]:
    """rax = ``value`` for a return value: ``xor eax,eax`` for 0, else :func:`mov_imm`.

    With ``compact`` (at a call site, where the stack slot below ``rsp`` is
    free and the flags are dead) a value in -128..-1 becomes ``push imm8;
    pop rax`` (3 bytes) instead of the 7-byte ``mov rax, simm32``.
    """
    pattern = check_range(value, 64, "rax")
    if pattern == 0:
        return [xor_eax()]
    signed = pattern - (1 << 64) if pattern >= 1 << 63 else pattern
    if compact and -128 <= signed < 0:
        return [
            Encoded(f"push {signed}", bytes([0x6A, signed & 0xFF])),
            Encoded("pop rax", b"\x58"),
        ]
    return mov_imm("rax", value)


def jmp_rel32(source: int, destination: int) -> Encoded:
    """``jmp destination`` as ``e9 rel32`` placed at ``source``."""
    rel = destination - (source + 5)
    if not -(1 << 31) <= rel < 1 << 31:
        raise BadInput(
            f"a jmp at {source:#x} cannot reach {destination:#x} (more than 2 GiB away); "
            "give the return thunk's address in the same 2 GiB as the code"
        )
    return Encoded(f"jmp {destination:#x}", b"\xe9" + rel.to_bytes(4, "little", signed=True))


def encode_return(value: int, address: int, return_thunk: int | None = None) -> list[Encoded]:
    """``rax = value; ret`` at ``address``, or ``jmp return_thunk`` in place of ``ret``."""
    code = load_rax(value)
    if return_thunk is None:
        return [*code, Encoded("ret", RET)]
    at = address + sum(len(e.data) for e in code)
    return [*code, jmp_rel32(at, return_thunk)]


def encode_skip_call(value: int | None) -> list[Encoded]:
    """What replaces a call: ``xor eax, eax`` (or rax = ``value``); the caller pads."""
    if value is None:
        return [xor_eax()]
    return load_rax(value, compact=True)


def is_call(insn: Insn) -> bool:
    """A ``call`` of any form (direct or indirect)."""
    return insn.mnemonic.split()[-1] == "call"


def branch_target(insn: Insn) -> int | None:
    """The destination of a direct (relative) jump, jcc, loop or call; else None."""
    mnemonic = insn.mnemonic.split()[-1]
    if _BRANCHES.match(mnemonic) and _IMMEDIATE.match(insn.op_str):
        return int(insn.op_str, 16)
    return None


def is_indirect_jump(insn: Insn) -> bool:
    """``jmp reg`` / ``jmp [mem]``: its destination (a jump table?) is unknown."""
    return insn.mnemonic.split()[-1] == "jmp" and branch_target(insn) is None


def is_relative(insn: Insn) -> str | None:
    """Why ``insn`` cannot be copied elsewhere verbatim, or None if it can."""
    if branch_target(insn) is not None:
        return f"'{insn.text}' is a relative branch"
    if "rip" in insn.op_str:
        return f"'{insn.text}' addresses memory relative to rip"
    return None


def relocate(code: list[Insn], to: int) -> bytes:
    """The bytes of ``code`` moved to ``to``: ``jmp``/``call`` rel32 re-aimed.

    Refuses (BadInput) any other position-dependent instruction; plan_cut
    never puts one in a stub.
    """
    out = bytearray()
    for insn in code:
        here = to + len(out)
        target = branch_target(insn)
        if target is not None and insn.data[0] in (0xE8, 0xE9) and insn.size == 5:
            rel = target - (here + 5)
            if not -(1 << 31) <= rel < 1 << 31:
                raise BadInput(f"{insn.text} cannot reach {target:#x} from {here:#x}")
            out += insn.data[:1] + rel.to_bytes(4, "little", signed=True)
        elif is_relative(insn) is not None:
            raise BadInput(f"cannot move {insn.text} to {here:#x}; it is position-dependent")
        else:
            out += insn.data
    return bytes(out)
