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

:data:`ARCH` is the table entry (:class:`knockout.arch.Arch`) built on
these functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from knockout.arch import FLAGS, Arch, CodeStyle, EntryPrefix, RegsLayout, check_range
from knockout.errors import BadInput
from knockout.insn import Encoded, Insn

__all__ = [
    "ARCH",
    "AUTIASP",
    "AUTIBSP",
    "NOP",
    "PACIASP",
    "PACIBSP",
    "RET",
    "access",
    "add_sp",
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
#: instructions after which execution never falls through
_EXITS = frozenset({"ret", "retaa", "retab", "b", "br", "braa", "brab", "braaz", "brabz"})
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


def add_sp(n: int) -> Encoded:
    """``add sp, sp, #n``: a 12-bit immediate, shifted by 12 when n is a multiple of 4096.

    >>> add_sp(0x30).data.hex(), add_sp(0x2000).text
    ('ffc30091', 'add sp, sp, #0x2000')
    """
    if 0 < n < 1 << 12:
        shift, imm = 0, n
    elif n % 4096 == 0 and 0 < n >> 12 < 1 << 12:
        shift, imm = 1, n >> 12
    else:
        raise BadInput(f"cannot free {n:#x} bytes of stack in one add; the frame is too large")
    return Encoded(f"add sp, sp, #{n:#x}", word(0x910003FF | shift << 22 | imm << 10))


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


# --- what the search reads and writes (knockout.search) ----------------------------------
#
# capstone 5's operand access flags are wrong for aliases on arm64 (``cmp x0, x1`` "writes"
# x0, ``cbz`` "reads" NZCV), so reads and writes come from the assembly text: the first
# register operand is the destination except where the instruction has none.

_REG = re.compile(r"\b([xw](?:30|[12]?\d)|w?sp|[xw]zr|fp|lr)\b")
#: instructions whose register operands are all read
_NO_DEST = frozenset(
    {"cmp", "cmn", "tst", "ccmp", "ccmn", "fcmp", "fcmpe", "fccmp", "fccmpe", "cbz", "cbnz"}
    | {"tbz", "tbnz", "br", "blr", "ret", "b", "prfm", "prfum"}
)
_READS_FLAGS = frozenset(
    {"csel", "csinc", "csinv", "csneg", "cset", "csetm", "cinc", "cinv", "cneg", "fcsel"}
    | {"ccmp", "ccmn", "fccmp", "fccmpe", "adc", "adcs", "sbc", "sbcs", "ngc", "ngcs"}
)
_WRITES_FLAGS = frozenset(
    {"cmp", "cmn", "tst", "ands", "bics", "adds", "subs", "adcs", "sbcs", "negs", "ngcs"}
    | {"ccmp", "ccmn", "fcmp", "fcmpe", "fccmp", "fccmpe"}
)
#: read-modify-write: the destination keeps some of its bits
_KEEPS_DEST = frozenset({"movk", "bfi", "bfxil", "bfm", "bfc"})
_LOADS = frozenset({"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrsw", "ldur", "ldurb", "ldurh"})
#: registers a function must preserve (AAPCS64), restored by its epilogue
CALLEE_SAVED = frozenset(f"x{i}" for i in range(19, 31))


def _canonical(name: str) -> str | None:
    """``w0`` -> ``x0``, ``fp`` -> ``x29``, ``lr`` -> ``x30``, ``wsp`` -> ``sp``; ``xzr``: None."""
    name = name.lower()
    if name in ("xzr", "wzr"):
        return None
    if name == "nzcv":
        return FLAGS
    if name in ("sp", "wsp"):
        return "sp"
    return {"fp": "x29", "lr": "x30"}.get(name) or re.sub(r"^w(\d+)$", r"x\1", name)


def _registers(text: str) -> list[str]:
    return [r for r in (_canonical(t) for t in _REG.findall(text)) if r]


def access(insn: Insn) -> tuple[frozenset[str], frozenset[str]]:
    """``(reads, writes)`` of ``insn`` in canonical names (:data:`FLAGS` for NZCV).

    >>> r, w = access(Insn(0, word(0xF941A41C), "ldr", "x28, [x0, #0x348]"))
    >>> sorted(r), sorted(w)
    (['x0'], ['x28'])
    """
    m, ops = insn.mnemonic, insn.op_str
    reads: set[str] = set()
    writes: set[str] = set()
    if m.startswith("ld") or m.startswith("st"):
        before, _, address = ops.partition("[")
        regs = _registers(before)
        base = _registers(address)
        reads.update(base)
        if "!" in address or re.search(r"\],\s*#", ops):  # writeback to the base
            writes.update(base[:1])
        if m.startswith("ld"):
            writes.update(regs)
        elif m.startswith(("stxr", "stlxr", "stxp", "stlxp")):  # the status register is written
            writes.update(regs[:1])
            reads.update(regs[1:])
        else:
            reads.update(regs)
    elif m in ("bl", "blr") or m.startswith("blra"):
        reads.update(_registers(ops))
        writes.add("x30")
    else:
        regs = _registers(ops)
        if m in _NO_DEST or m.startswith("b.") or not regs:
            reads.update(regs)
        else:
            writes.add(regs[0])
            reads.update(regs[1:])
            if m in _KEEPS_DEST:
                reads.add(regs[0])
    if m in _READS_FLAGS or m.startswith("b."):
        reads.add(FLAGS)
    if m in _WRITES_FLAGS:
        writes.add(FLAGS)
    return frozenset(reads), frozenset(writes)


def restores_only(insn: Insn) -> bool:
    """An epilogue instruction: ``ldp``/``ldr`` of callee-saved registers from the stack,
    ``add sp, sp, #N``, ``mov sp, x29``, ``autiasp``/``autibsp``, a hint or a NOP."""
    m, ops = insn.mnemonic, insn.op_str
    if m in ("autiasp", "autibsp", "nop", "hint"):
        return True
    if m in ("ldp", "ldr"):
        before, _, address = ops.partition("[")
        if not re.match(r"sp\b", address):
            return False
        regs = [t.strip() for t in before.split(",") if t.strip()]
        return all(r in CALLEE_SAVED or re.fullmatch(r"d(8|9|1[0-5])", r) for r in regs)
    if m == "add":
        return bool(re.fullmatch(r"sp, sp, #(0x[0-9a-f]+|\d+)", ops))
    return m == "mov" and ops == "sp, x29"


def loaded_register(insn: Insn) -> str | None:
    """The register (``x28``, ``w0``) a single-register load from memory writes, else None.

    >>> loaded_register(Insn(0, word(0xF941A41C), "ldr", "x28, [x0, #0x348]"))
    'x28'
    """
    if insn.mnemonic not in _LOADS:
        return None
    dest = insn.op_str.split(",")[0].strip()
    if not re.fullmatch(r"[xw](30|[12]?\d)", dest):
        return None
    return dest


class AArch64(Arch):
    """AArch64: fixed 32-bit words; a kernel cut rewrites words in place."""

    def nops(self, n: int) -> bytes:
        return nops(n)

    def parse_reg(self, reg: str) -> tuple[int, int]:
        return parse_reg(reg)

    def set_register(self, reg: str, value: int) -> list[Encoded]:
        return mov_imm(reg, value, single=True)

    def encode_return(
        self, value: int, at: int, prefix: EntryPrefix, style: CodeStyle
    ) -> list[Encoded]:
        return encode_return(value, pac=prefix.pac)

    def skip_call(self, value: int | None) -> list[Encoded]:
        return encode_skip_call(value)

    def fit_hint(self, what: str, needed: int, room: int) -> str:
        return "every aarch64 instruction is one word; cut a single instruction"

    def jump(self, source: int, destination: int) -> Encoded:
        offset = destination - source
        if offset % 4 or not -(1 << 27) <= offset < 1 << 27:
            raise BadInput(
                f"a b at {source:#x} cannot reach {destination:#x} (more than 128 MiB away "
                "or unaligned); place the stub within 128 MiB of the code"
            )
        return Encoded(f"b {destination:#x}", word(0x14000000 | ((offset >> 2) & 0x3FFFFFF)))

    def force_branch(self, insn: Insn, taken: bool, style: CodeStyle) -> list[Encoded]:
        target = branch_target(insn)
        if target is None or not self.is_conditional_branch(insn):
            raise BadInput(f"'{insn.text}' is not a conditional branch; give a b.cond/cbz/tbz's")
        return [self.jump(insn.address, target)] if taken else []

    def encode_return_at(
        self,
        value: int | None,
        at: int,
        epilogue: int,
        style: CodeStyle,
        pop: int = 0,
        replay: Sequence[Encoded] = (),
    ) -> list[Encoded]:
        code = [] if value is None else mov_imm("x0", value)
        if pop:
            code.append(add_sp(pop))
        code.extend(replay)
        return [*code, self.jump(at + 4 * len(code), epilogue)]

    def compact_zero(self, reg: str) -> list[Encoded] | None:
        return None  # every mov is one word already

    def relocate(self, code: Sequence[Insn], to: int) -> bytes:
        out = bytearray()
        for insn in code:
            if self.position_dependence(insn) is not None:
                raise BadInput(
                    f"cannot move {insn.text} to {to + len(out):#x}; it is position-dependent"
                )
            out += insn.data
        return bytes(out)

    def is_call(self, insn: Insn) -> bool:
        return is_call(insn)

    def branch_target(self, insn: Insn) -> int | None:
        return branch_target(insn)

    def is_indirect_jump(self, insn: Insn) -> bool:
        return is_indirect_jump(insn)

    def ends_flow(self, insn: Insn) -> bool:
        return insn.mnemonic in _EXITS or insn.mnemonic == "udf"

    def is_breakpoint(self, insn: Insn) -> bool:
        return insn.mnemonic == "brk"

    def position_dependence(self, insn: Insn) -> str | None:
        if branch_target(insn) is not None:
            return f"'{insn.text}' is a relative branch"
        literal = insn.mnemonic.startswith("ldr") and "[" not in insn.op_str  # ldr x0, #label
        if insn.mnemonic in ("adr", "adrp") or literal:
            return f"'{insn.text}' addresses memory relative to pc"
        return None

    def can_relocate(self, insn: Insn) -> bool:
        return False

    def stub_refusal(self, insn: Insn) -> str | None:
        if is_call(insn):
            return "its return address would point into the stub, which is reused after the revert"
        if insn.mnemonic in ("brk", "udf"):
            return "a trap the kernel finds by address"
        return None

    def entry_prefix(self, insns: Sequence[Insn], style: CodeStyle) -> EntryPrefix:
        """``bti``, ftrace's ``mov x9, x30`` + its ``nop``/``bl``, and ``paciasp``/``pacibsp``."""
        i, pac = 0, None
        if i < len(insns) and insns[i].mnemonic == "bti":
            i += 1
        if (
            i + 1 < len(insns)
            and insns[i].text == "mov x9, x30"
            and insns[i + 1].mnemonic in ("nop", "bl")
        ):
            i += 2
        if i < len(insns) and insns[i].mnemonic in ("paciasp", "pacibsp"):
            pac = insns[i].mnemonic[4]  # paci[a]sp / paci[b]sp
            i += 1
        return EntryPrefix(i, pac)

    def is_return(self, insn: Insn) -> bool:
        return insn.mnemonic in ("ret", "retaa", "retab")

    def is_conditional_branch(self, insn: Insn) -> bool:
        conditional = insn.mnemonic.startswith("b.") or insn.mnemonic in (
            "cbz",
            "cbnz",
            "tbz",
            "tbnz",
        )
        return conditional and branch_target(insn) is not None

    def is_padding(self, insn: Insn) -> bool:
        return insn.mnemonic in ("nop", "udf", "brk")

    def restores_only(self, insn: Insn) -> bool:
        return restores_only(insn)

    def writes_only_return(self, insn: Insn) -> bool:
        if insn.mnemonic.startswith("st"):
            return False
        _reads, writes = access(insn)
        return "x0" in writes and writes <= {"x0", FLAGS}

    def pushed_register(self, insn: Insn) -> str | None:
        return None  # saves are stp/str at offsets: read them from the CFI

    def popped_register(self, insn: Insn) -> str | None:
        return None

    def stack_register(self) -> str:
        return "sp"

    def return_register(self) -> str:
        return "x0"

    def loaded_register(self, insn: Insn) -> str | None:
        return loaded_register(insn)

    def canonical_register(self, name: str) -> str | None:
        return _canonical(name)

    def reads(self, insn: Insn) -> frozenset[str]:
        return access(insn)[0]

    def writes(self, insn: Insn) -> frozenset[str]:
        return access(insn)[1]

    def dwarf_register(self, number: int) -> str:
        # DWARF for the Arm 64-bit Architecture: 0-30 x0-x30, 31 sp, 64-95 v0-v31
        if 0 <= number <= 30:
            return f"x{number}"
        if number == 31:
            return "sp"
        if 64 <= number <= 95:
            return f"d{number - 64}"
        return f"dwarf{number}"

    def may_restart_syscall(self, orig: int | None) -> bool:
        return True  # NT_PRSTATUS has no syscall number here: assume it may

    def kernel_code_style(
        self,
        kernel_symbol: Callable[[str], int | None],
        read_pointer: Callable[[int], int | None],
        read_text: Callable[[int, int], bytes],
    ) -> CodeStyle:
        # knockout.ko writes one instruction word per cut on arm64 (aarch64_insn_patch_text):
        # a task preempted between two words would run a mix of old and new
        return CodeStyle(ftrace_entry=True, max_len=4)


ARCH = AArch64(
    name="aarch64",
    aliases=("aarch64", "arm64"),
    bits=64,
    endian="little",
    elf_machine="EM_AARCH64",
    elf_machine_number=183,
    llvm_triple="aarch64-linux-gnu",
    insn_align=4,
    max_insn_len=4,
    capstone=(1, 0),  # CS_ARCH_ARM64, CS_MODE_ARM (capstone 5)
    keystone=("KS_ARCH_ARM64", "KS_MODE_LITTLE_ENDIAN"),
    kbuild_arch="arm64",
    cross_compile="aarch64-linux-gnu-",
    syscall_insn_len=4,
    # struct user_pt_regs: x0..x30 sp pc pstate
    regs=RegsLayout(words=34, pc=32, sp=31, ret=0, orig=None, link=30),
    plt_header=32,
    kernel_mechanism="aarch64_insn_patch_text",
    stub_jump_len=None,
    registers=frozenset([f"x{i}" for i in range(31)] + [f"w{i}" for i in range(31)]),
    word_bytes=4,
)
