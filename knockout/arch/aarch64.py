"""AArch64 encoders for the cut intents, written by hand (no keystone).

Every instruction is one little-endian 32-bit word.  ``mov`` of an
immediate is encoded as LLVM spells the alias: ``movz`` if one 16-bit chunk
holds the value, else ``movn`` if one holds its inverse, else ``orr`` with a
logical (bitmask) immediate; a value none of them holds takes a
``movz``/``movn`` followed by ``movk`` for each remaining chunk.

>>> [e.data.hex() for e in mov_imm("x28", 0)]
['1c0080d2']
>>> [e.data.hex() for e in encode_return(0)]
['000080d2', 'c0035fd6']
"""

from __future__ import annotations

import re

from knockout.arch import check_range
from knockout.asm import Encoded, Insn
from knockout.errors import BadInput

__all__ = [
    "AUTIASP",
    "AUTIBSP",
    "NOP",
    "PACIASP",
    "PACIBSP",
    "RET",
    "bitmask_immediate",
    "branch_target",
    "encode_return",
    "encode_skip_call",
    "is_call",
    "is_indirect_jump",
    "mov_imm",
    "nops",
    "parse_reg",
    "word",
]

NOP = 0xD503201F
RET = 0xD65F03C0
PACIASP = 0xD503233F
PACIBSP = 0xD503237F
AUTIASP = 0xD50323BF
AUTIBSP = 0xD50323FF

_MOVN, _MOVZ, _MOVK = 0b00, 0b10, 0b11
_BRANCHES = {"b", "bl", "cbz", "cbnz", "tbz", "tbnz"}
_TARGET = re.compile(r"#(0x[0-9a-f]+|\d+)$")


def word(value: int) -> bytes:
    """One instruction word as it sits in memory (little-endian)."""
    return value.to_bytes(4, "little")


def nops(n: int) -> bytes:
    """``n`` bytes (a multiple of 4) of ``nop``."""
    if n % 4:
        raise BadInput(f"{n} bytes is not a whole number of aarch64 instructions")
    return word(NOP) * (n // 4)


def parse_reg(reg: str) -> tuple[int, int]:
    """``'x28'`` -> ``(28, 64)``; ``'w0'`` -> ``(0, 32)``; BadInput for anything else."""
    m = re.fullmatch(r"([xw])(\d+)", reg.strip().lower())
    if not m or int(m.group(2)) > 30:
        raise BadInput(
            f"aarch64 has no general-purpose register {reg!r}; use x0..x30 or w0..w30 "
            "(sp and xzr cannot be set by a mov of an immediate)"
        )
    return int(m.group(2)), 64 if m.group(1) == "x" else 32


def _name(n: int, bits: int) -> str:
    return f"{'x' if bits == 64 else 'w'}{n}"


def _wide(opc: int, n: int, bits: int, imm16: int, hw: int) -> int:
    sf = 1 if bits == 64 else 0
    return (sf << 31) | (opc << 29) | (0b100101 << 23) | (hw << 21) | (imm16 << 5) | n


def _chunks(pattern: int, bits: int) -> list[int]:
    return [(pattern >> (16 * i)) & 0xFFFF for i in range(bits // 16)]


def bitmask_immediate(pattern: int, bits: int) -> tuple[int, int, int] | None:
    """``(N, immr, imms)`` encoding ``pattern`` as a logical immediate, or None."""
    mask = (1 << bits) - 1
    if pattern in (0, mask):
        return None
    size = bits
    while size > 2:
        half = size // 2
        if (pattern & ((1 << half) - 1)) != (pattern >> half) & ((1 << half) - 1):
            break
        size = half
    elt_mask = (1 << size) - 1
    elt = pattern & elt_mask
    ones = bin(elt).count("1")
    run = (1 << ones) - 1
    for k in range(size):
        if ((elt >> k) | (elt << (size - k))) & elt_mask == run:
            immr = (size - k) % size
            imms = ((-size << 1) & 0x3F) | (ones - 1)
            return (1 if size == 64 else 0), immr, imms
    return None


def _single_mov(n: int, bits: int, pattern: int) -> Encoded | None:
    """``mov reg, #pattern`` as one instruction, LLVM's choice, or None."""
    name = _name(n, bits)
    chunks = _chunks(pattern, bits)
    nonzero = [i for i, c in enumerate(chunks) if c]
    if len(nonzero) <= 1:
        hw = nonzero[0] if nonzero else 0
        return Encoded(f"mov {name}, #{pattern:#x}", word(_wide(_MOVZ, n, bits, chunks[hw], hw)))
    inverted = _chunks(~pattern & ((1 << bits) - 1), bits)
    nonzero = [i for i, c in enumerate(inverted) if c]
    if len(nonzero) <= 1:
        hw = nonzero[0] if nonzero else 0
        return Encoded(f"mov {name}, #{pattern:#x}", word(_wide(_MOVN, n, bits, inverted[hw], hw)))
    logical = bitmask_immediate(pattern, bits)
    if logical is not None:
        big_n, immr, imms = logical
        sf = 1 if bits == 64 else 0
        insn = (sf << 31) | (0b01100100 << 23) | (big_n << 22) | (immr << 16) | (imms << 10)
        return Encoded(f"mov {name}, #{pattern:#x}", word(insn | (31 << 5) | n))
    return None


def _sequence(n: int, bits: int, pattern: int) -> list[Encoded]:
    """``movz``/``movn`` then ``movk``s: whichever base leaves fewer chunks to fix."""
    name = _name(n, bits)
    chunks = _chunks(pattern, bits)
    use_movn = sum(c == 0xFFFF for c in chunks) > sum(c == 0 for c in chunks)
    skip = 0xFFFF if use_movn else 0
    todo = [i for i, c in enumerate(chunks) if c != skip]
    first, rest = todo[0], todo[1:]
    opc, mnemonic = (_MOVN, "movn") if use_movn else (_MOVZ, "movz")
    imm = ~chunks[first] & 0xFFFF if use_movn else chunks[first]
    text = f"{mnemonic} {name}, #{imm:#x}, lsl #{16 * first}"
    out = [Encoded(text, word(_wide(opc, n, bits, imm, first)))]
    for hw in rest:
        text = f"movk {name}, #{chunks[hw]:#x}, lsl #{16 * hw}"
        out.append(Encoded(text, word(_wide(_MOVK, n, bits, chunks[hw], hw))))
    return out


def mov_imm(reg: str, value: int, *, single: bool = False) -> list[Encoded]:
    """``reg = value``: one instruction where one can hold it, else a sequence.

    With ``single``, a value that needs more than one instruction is a
    BadInput (a ``set`` cut replaces exactly one instruction).
    """
    n, bits = parse_reg(reg)
    pattern = check_range(value, bits, reg)
    one = _single_mov(n, bits, pattern)
    if one is not None:
        return [one]
    if single:
        raise BadInput(
            f"{value:#x} needs {len(_sequence(n, bits, pattern))} instructions in {reg} but "
            "this cut replaces exactly one; use a value one mov holds (16 bits at a shift of "
            "0/16/32/48, its inverse, or a bitmask immediate)"
        )
    return _sequence(n, bits, pattern)


def encode_return(value: int, *, pac: str | None = None) -> list[Encoded]:
    """``mov x0, #value; ret``; with ``pac`` ('a' or 'b'), ``autiasp``/``autibsp`` before ``ret``.

    ``pac`` is for a cut placed after the function's ``paciasp``/``pacibsp``
    (kept so the entry stays a BTI landing pad): the signed return address
    must be authenticated before ``ret``.
    """
    code = mov_imm("x0", value)
    if pac is not None:
        auth = {"a": Encoded("autiasp", word(AUTIASP)), "b": Encoded("autibsp", word(AUTIBSP))}
        if pac not in auth:
            raise BadInput(f"pac must be 'a' or 'b' (the key of paciasp/pacibsp), not {pac!r}")
        code.append(auth[pac])
    return [*code, Encoded("ret", word(RET))]


def encode_skip_call(value: int | None) -> list[Encoded]:
    """What replaces a ``bl``/``blr``: ``nop``, or ``mov x0, #value`` (one instruction)."""
    if value is None:
        return [Encoded("nop", word(NOP))]
    return mov_imm("x0", value, single=True)


def is_call(insn: Insn) -> bool:
    """``bl``/``blr`` and their pointer-authenticating forms."""
    return insn.mnemonic in ("bl", "blr") or insn.mnemonic.startswith("blra")


def branch_target(insn: Insn) -> int | None:
    """The destination of a direct branch (b, b.cond, bl, cbz/cbnz, tbz/tbnz); else None."""
    if insn.mnemonic in _BRANCHES or insn.mnemonic.startswith("b."):
        m = _TARGET.search(insn.op_str)
        if m:
            return int(m.group(1), 0)
    return None


def is_indirect_jump(insn: Insn) -> bool:
    """``br``/``braa``...: its destination (a jump table?) is unknown."""
    return insn.mnemonic in ("br", "braa", "brab", "braaz", "brabz")
