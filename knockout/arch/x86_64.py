"""x86_64 encoders for the cut intents, written by hand (no keystone).

Every encoder returns a list of :class:`knockout.asm.Encoded` -- the
assembly text it stands for and its bytes -- so tests can cross-check each
one against keystone and ``llvm-mc``.  Values are Python ints; a value is
taken modulo the register's width after a range check, so ``-1`` and
``0xffffffffffffffff`` mean the same 64-bit pattern.

Writes to a 32-bit register zero-extend into the 64-bit one, as the CPU
does; :func:`mov_imm` uses that to pick the shortest encoding.

:data:`ARCH` is the table entry (:class:`knockout.arch.Arch`) built on
these functions.

>>> ARCH.set_register("eax", 7)[0].data.hex()
'b807000000'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from knockout.arch import FLAGS, Arch, CodeStyle, EntryPrefix, RegsLayout, check_range
from knockout.errors import BadInput
from knockout.insn import Encoded, Insn

__all__ = [
    "ARCH",
    "ENDBR64",
    "FENTRY_NOP",
    "INT3",
    "RET",
    "add_rsp",
    "branch_target",
    "encode_force_branch",
    "encode_return",
    "encode_return_at",
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
    "xor_zero",
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
#: instructions after which execution never falls through
_EXITS = frozenset({"ret", "jmp", "ud2"})
#: traps the kernel finds by address (BUG/WARN are UD2), and INT3 is nobody's breakpoint there
_TRAPS = frozenset({"int3", "int", "int1", "into", "ud2"})
_IMMEDIATE = re.compile(r"^(0x[0-9a-f]+|\d)$")  # capstone writes 0..9 in decimal


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


def _mnemonic(insn: Insn) -> str:
    """The mnemonic without prefixes (``notrack jmp`` -> ``jmp``, ``bnd ret`` -> ``ret``)."""
    return insn.mnemonic.split()[-1]


# --- what the search reads and writes (knockout.search) ----------------------------------

#: registers a function must preserve (System V AMD64 ABI), restored by its epilogue
CALLEE_SAVED = frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15"})
#: DWARF register numbers (System V AMD64 ABI, figure 3.36): 16 is the return address
_DWARF = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp"] + [f"r{i}" for i in range(8, 16)]
_JCC = re.compile(r"^j(?!mp$)[a-z]+$")
_LEGACY = {"a": "rax", "b": "rbx", "c": "rcx", "d": "rdx"}
_INDEX = {"si": "rsi", "di": "rdi", "bp": "rbp", "sp": "rsp"}
_STATUS_FLAGS = ("CF", "PF", "AF", "ZF", "SF", "OF")
_LOADS = frozenset({"mov", "movzx", "movsx", "movsxd"})


def xor_zero(reg: str) -> list[Encoded]:
    """``xor r32, r32``: ``reg`` = 0 in 2 or 3 bytes (it clobbers the flags).

    >>> [e.text for e in xor_zero("r12")], xor_zero("rbx")[0].data.hex()
    (['xor r12d, r12d'], '31db')
    """
    n, _bits = parse_reg(reg)
    rex = b"\x45" if n >= 8 else b""
    return [Encoded(f"xor {_REG32[n]}, {_REG32[n]}", rex + bytes([0x31, 0xC0 | (n & 7) * 9]))]


def _canonical(name: str) -> str | None:
    """``eax``/``ax``/``al``/``ah`` -> ``rax``, ``r9d`` -> ``r9``; ``rflags`` -> :data:`FLAGS`."""
    name = name.lower()
    if name in ("rip", "eip", "ip"):
        return None
    if name == "rflags":
        return FLAGS
    m = re.fullmatch(r"r(\d+)[dwb]?", name)
    if m:
        return f"r{m[1]}"
    m = re.fullmatch(r"[re]?([abcd])[xlh]", name)
    if m:
        return _LEGACY[m[1]]
    m = re.fullmatch(r"[re]?(si|di|bp|sp)l?", name)
    if m:
        return _INDEX[m[1]]
    return name


def _partial(name: str) -> bool:
    """An 8- or 16-bit register name: writing it keeps the rest of the register."""
    return bool(re.fullmatch(r"[abcd][xlh]|(si|di|bp|sp)l?|r\d+[wb]", name.lower()))


@functools.cache
def _detail_decoder() -> Any:
    import capstone

    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = True
    return cs


@functools.cache
def _flag_masks() -> tuple[int, dict[str, int]]:
    """capstone's eflags bits: (any test of a status flag, {flag: any write of it})."""
    from capstone import x86_const

    bits = {n: v for n, v in vars(x86_const).items() if n.startswith("X86_EFLAGS_")}
    tested = sum(bits.get(f"X86_EFLAGS_TEST_{f}", 0) for f in _STATUS_FLAGS)
    ways = ("MODIFY", "RESET", "SET", "UNDEFINED")
    written = {f: sum(bits.get(f"X86_EFLAGS_{how}_{f}", 0) for how in ways) for f in _STATUS_FLAGS}
    return tested, written


@functools.lru_cache(maxsize=4096)
def access(insn: Insn) -> tuple[frozenset[str], frozenset[str]]:
    """``(reads, writes)`` of ``insn`` in canonical register names, from capstone's details.

    A partial write (an 8/16-bit register, some of the status flags) counts
    as a read and a write: what it keeps is read on.

    >>> r, w = access(Insn(0, bytes.fromhex("4885c0"), "test", "rax, rax"))
    >>> sorted(r), sorted(w)
    (['rax'], ['flags'])
    """
    decoded = next(_detail_decoder().disasm(insn.data, insn.address), None)
    if decoded is None:
        return frozenset(), frozenset()
    read_ids, write_ids = decoded.regs_access()
    reads = {_canonical(decoded.reg_name(r)) for r in read_ids}
    writes = set()
    for r in write_ids:
        name = decoded.reg_name(r)
        writes.add(_canonical(name))
        if _partial(name):
            reads.add(_canonical(name))
    reads.discard(FLAGS)
    writes.discard(FLAGS)
    tested, written = _flag_masks()
    eflags = decoded.eflags
    if eflags & tested:
        reads.add(FLAGS)
    hit = [f for f, mask in written.items() if eflags & mask]
    if hit:
        writes.add(FLAGS)
        if len(hit) < len(_STATUS_FLAGS):
            reads.add(FLAGS)
    return frozenset(r for r in reads if r), frozenset(w for w in writes if w)


@functools.lru_cache(maxsize=4096)
def writes_memory(insn: Insn) -> bool:
    """``insn`` writes memory through an operand, or pushes (capstone's operand access).

    >>> writes_memory(Insn(0, bytes.fromhex("48891f"), "mov", "qword ptr [rdi], rbx"))
    True
    """
    import capstone

    decoded = next(_detail_decoder().disasm(insn.data, insn.address), None)
    if decoded is None:
        return True
    if _mnemonic(insn) in ("push", "call", "stosb", "stosd", "stosq", "movsb", "movsq"):
        return True
    return any(
        op.type == capstone.CS_OP_MEM and op.access & capstone.CS_AC_WRITE
        for op in decoded.operands
    )


def writes_only_return(insn: Insn) -> bool:
    """rax (and the flags) and nothing else is written: ``mov rax, rbx``, ``xor eax, eax``."""
    _reads, writes = access(insn)
    return "rax" in writes and writes <= {"rax", FLAGS} and not writes_memory(insn)


def _memory_operand(op_str: str) -> bool:
    return "ptr [" in op_str or op_str.startswith("[") or ":[" in op_str


def restores_only(insn: Insn) -> bool:
    """An epilogue instruction: ``pop`` of a callee-saved register, ``add rsp``, ``lea rsp``,
    ``leave``, a reload from the stack into a callee-saved register, ``vzeroupper``, a NOP."""
    m, ops = _mnemonic(insn), insn.op_str
    if m in ("leave", "vzeroupper", "nop"):
        return True
    if m == "pop":
        return ops in CALLEE_SAVED
    if m == "add":
        return bool(re.fullmatch(r"rsp, 0x[0-9a-f]+|rsp, \d+", ops))
    if m == "lea":
        return bool(re.fullmatch(r"rsp, \[r[sb]p(?: [+-] (?:0x[0-9a-f]+|\d+))?\]", ops))
    if m == "mov":
        dest, _, src = ops.partition(", ")
        stack = re.fullmatch(r"qword ptr \[rsp(?: \+ 0x[0-9a-f]+)?\]", src)
        return dest in CALLEE_SAVED and stack is not None
    return False


def loaded_register(insn: Insn) -> str | None:
    """The 32/64-bit register a ``mov``/``movzx``/``movsx`` from memory writes, else None.

    Loads through a segment (``fs:``/``gs:``: TLS, per-CPU data, the stack
    canary) and into 8/16-bit registers or ``rsp`` are not plain loads here.

    >>> loaded_register(Insn(0, bytes.fromhex("4c8b6f08"), "mov", "r13, qword ptr [rdi + 8]"))
    'r13'
    """
    if _mnemonic(insn) not in _LOADS:
        return None
    dest, _, src = insn.op_str.partition(", ")
    if not _memory_operand(src) or ":[" in src or dest in ("rsp", "esp"):
        return None
    return dest if dest in _REG64 or dest in _REG32 else None


def encode_force_branch(insn: Insn, taken: bool, *, relocatable: bool = False) -> list[Encoded]:
    """A jcc made unconditional: ``jmp`` its target (``taken``), or nothing (the caller pads).

    In place the jump fits the jcc: ``eb rel8`` for a 2-byte jcc, ``e9
    rel32`` for a 6-byte one; ``relocatable`` (a jump stub) always gives
    ``e9 rel32``, which :func:`relocate` re-aims.
    """
    target = branch_target(insn)
    if target is None or not _JCC.match(_mnemonic(insn)):
        raise BadInput(f"'{insn.text}' is not a conditional jump; give a jcc's offset")
    if not taken:
        return []
    if relocatable or insn.size >= 5:
        return [jmp_rel32(insn.address, target)]
    return [_jmp_rel8(insn.address, target)]


def _jmp_rel8(source: int, destination: int) -> Encoded:
    rel = destination - (source + 2)
    if not -128 <= rel < 128:
        raise BadInput(
            f"a 2-byte jmp at {source:#x} cannot reach {destination:#x}; cut a longer instruction"
        )
    return Encoded(f"jmp {destination:#x}", b"\xeb" + rel.to_bytes(1, "little", signed=True))


def add_rsp(n: int) -> Encoded:
    """``add rsp, n`` (``48 83 c4 ib`` or ``48 81 c4 id``; it clobbers the flags)."""
    if not 0 < n < 1 << 31:
        raise BadInput(f"cannot free {n} bytes of stack in one add; the frame is too large")
    if n < 128:
        return Encoded(f"add rsp, {n:#x}", bytes.fromhex("4883c4") + bytes([n]))
    return Encoded(f"add rsp, {n:#x}", bytes.fromhex("4881c4") + n.to_bytes(4, "little"))


def encode_return_at(
    value: int | None,
    address: int,
    epilogue: int,
    *,
    pop: int = 0,
    replay: Sequence[Encoded] = (),
    relocatable: bool = False,
) -> list[Encoded]:
    """rax = ``value`` (:func:`load_rax`; None: rax kept), ``add rsp, pop``, the ``replay``
    instructions, ``jmp epilogue``.

    The jump is ``eb rel8`` where it reaches, else ``e9 rel32``;
    ``relocatable`` (a jump stub) always gives ``e9 rel32``.

    >>> [e.text for e in encode_return_at(0, 0x1000, 0x1040, pop=0x48)]
    ['xor eax, eax', 'add rsp, 0x48', 'jmp 0x1040']
    """
    code = [] if value is None else load_rax(value)
    if pop:
        code.append(add_rsp(pop))
    code.extend(replay)
    at = address + sum(len(e.data) for e in code)
    rel = epilogue - (at + 2)
    if not relocatable and -128 <= rel < 128:
        return [*code, _jmp_rel8(at, epilogue)]
    return [*code, jmp_rel32(at, epilogue)]


#: the return thunks a kernel may have patched its returns to (retbleed, SRSO, ITS, call depth)
_RETURN_THUNKS = (
    "__x86_return_thunk",
    "srso_return_thunk",
    "srso_alias_return_thunk",
    "retbleed_return_thunk",
    "its_return_thunk",
    "call_depth_return_thunk",
)
#: small functions whose return shows how the running kernel returns
_PLAIN_FUNCTIONS = ("__x64_sys_getppid", "__x64_sys_getpid", "_raw_spin_unlock")


def _how_the_kernel_returns(
    kernel_symbol: Callable[[str], int | None], read_text: Callable[[int, int], bytes]
) -> tuple[bool, int | None]:
    """``(found, thunk)``: how the kernel's own small functions return, after boot patching.

    A plain ``ret`` gives ``(True, None)``; a ``jmp`` to a return thunk gives that thunk.
    """
    thunks = {a for a in map(kernel_symbol, _RETURN_THUNKS) if a is not None}
    for name in _PLAIN_FUNCTIONS:
        start = kernel_symbol(name)
        if start is None:
            continue
        try:
            code = read_text(start, 64)
        except (BadInput, OSError, LookupError, PermissionError, RuntimeError):
            continue
        from knockout.asm import disasm

        for insn in disasm(code, ARCH, start):
            if _mnemonic(insn) == "ret":
                return True, None
            target = branch_target(insn)
            if _mnemonic(insn) == "jmp" and target in thunks:
                return True, target
    return False, None


def _kernel_return_thunk(
    kernel_symbol: Callable[[str], int | None],
    read_pointer: Callable[[int], int | None],
    read_text: Callable[[int, int], bytes],
) -> int | None:
    """Where a kernel ``ret`` goes: the return thunk the kernel chose at boot, or none.

    Linux 6.1.y with the SRSO mitigations (upstream commit d43490d0ab82,
    "x86/cpu: Clean up SRSO return thunk mess", in v6.5) keeps the thunk in
    a pointer, ``x86_return_thunk``, set at boot; before it, ``ret`` went
    to ``__x86_return_thunk``.  Where the pointer cannot be read (no
    ``/proc/kcore``), the kernel's own patched returns say it: since the
    upstream commit "x86/retpoline: Ensure default return thunk isn't used
    at runtime" (v6.9; in Debian's 6.12) a return through the default thunk
    when another was chosen is a WARNING (``__warn_thunk``).
    """
    pointer_at = kernel_symbol("x86_return_thunk")
    if pointer_at is not None:
        pointer = read_pointer(pointer_at)
        if pointer:
            return pointer
        found, thunk = _how_the_kernel_returns(kernel_symbol, read_text)
        if found:
            return thunk
    return kernel_symbol("__x86_return_thunk")


class X86_64(Arch):
    """x86_64: variable-length instructions; a kernel cut is a 5-byte ``jmp`` to a stub."""

    def nops(self, n: int) -> bytes:
        return nops(n)

    def parse_reg(self, reg: str) -> tuple[int, int]:
        return parse_reg(reg)

    def set_register(self, reg: str, value: int) -> list[Encoded]:
        return mov_imm(reg, value)

    def encode_return(
        self, value: int, at: int, prefix: EntryPrefix, style: CodeStyle
    ) -> list[Encoded]:
        return encode_return(value, at, style.return_thunk)

    def skip_call(self, value: int | None) -> list[Encoded]:
        return encode_skip_call(value)

    def fit_hint(self, what: str, needed: int, room: int) -> str:
        if what == "set":
            if needed == 10:
                return (
                    "pick a value that fits in 32 bits (a 5-7 byte mov) or cut a longer instruction"
                )
            return "cut a longer instruction, or use --bytes"
        if room >= 5:
            return "use a value in -128..0xffffffff"
        if room >= 3:
            return "use 0 or a value in -128..-1"
        return "only 0 fits (xor eax, eax)"

    def jump(self, source: int, destination: int) -> Encoded:
        return jmp_rel32(source, destination)

    def relocate(self, code: Sequence[Insn], to: int) -> bytes:
        return relocate(list(code), to)

    def force_branch(self, insn: Insn, taken: bool, style: CodeStyle) -> list[Encoded]:
        return encode_force_branch(insn, taken, relocatable=style.jump_stub)

    def encode_return_at(
        self,
        value: int | None,
        at: int,
        epilogue: int,
        style: CodeStyle,
        pop: int = 0,
        replay: Sequence[Encoded] = (),
    ) -> list[Encoded]:
        return encode_return_at(
            value, at, epilogue, pop=pop, replay=replay, relocatable=style.jump_stub
        )

    def compact_zero(self, reg: str) -> list[Encoded] | None:
        return xor_zero(reg)

    def is_call(self, insn: Insn) -> bool:
        return is_call(insn)

    def branch_target(self, insn: Insn) -> int | None:
        return branch_target(insn)

    def is_indirect_jump(self, insn: Insn) -> bool:
        return is_indirect_jump(insn)

    def ends_flow(self, insn: Insn) -> bool:
        return _mnemonic(insn) in _EXITS

    def is_breakpoint(self, insn: Insn) -> bool:
        return insn.data == INT3

    def position_dependence(self, insn: Insn) -> str | None:
        return is_relative(insn)

    def can_relocate(self, insn: Insn) -> bool:
        return insn.data[:1] in (b"\xe8", b"\xe9") and insn.size == 5

    def stub_refusal(self, insn: Insn) -> str | None:
        if is_call(insn):
            return (
                "its return address would point into the stub, which is reused after the revert"
            )
        if _mnemonic(insn) in _TRAPS:
            return "a trap the kernel finds by address"
        return None

    def entry_prefix(self, insns: Sequence[Insn], style: CodeStyle) -> EntryPrefix:
        """``endbr64`` (the IBT landing pad) and ftrace's 5-byte nop (or ``call __fentry__``)."""
        i = 1 if insns and insns[0].data == ENDBR64 else 0
        at_entry = insns[i] if i < len(insns) else None
        if at_entry is not None and (
            at_entry.data == FENTRY_NOP
            or (style.ftrace_entry and at_entry.data[:1] == b"\xe8" and at_entry.size == 5)
        ):
            i += 1
        return EntryPrefix(i)

    def is_return(self, insn: Insn) -> bool:
        return _mnemonic(insn) == "ret"

    def is_conditional_branch(self, insn: Insn) -> bool:
        return bool(_JCC.match(_mnemonic(insn))) and branch_target(insn) is not None

    def is_padding(self, insn: Insn) -> bool:
        return _mnemonic(insn) in ("nop", "int3", "ud2")

    def restores_only(self, insn: Insn) -> bool:
        return restores_only(insn)

    def writes_only_return(self, insn: Insn) -> bool:
        return writes_only_return(insn)

    def pushed_register(self, insn: Insn) -> str | None:
        return insn.op_str if _mnemonic(insn) == "push" and insn.op_str in _REG64 else None

    def popped_register(self, insn: Insn) -> str | None:
        return insn.op_str if _mnemonic(insn) == "pop" and insn.op_str in _REG64 else None

    def stack_register(self) -> str:
        return "rsp"

    def return_register(self) -> str:
        return "rax"

    def loaded_register(self, insn: Insn) -> str | None:
        return loaded_register(insn)

    def canonical_register(self, name: str) -> str | None:
        return _canonical(name)

    def reads(self, insn: Insn) -> frozenset[str]:
        return access(insn)[0]

    def writes(self, insn: Insn) -> frozenset[str]:
        return access(insn)[1]

    def dwarf_register(self, number: int) -> str:
        if 0 <= number < len(_DWARF):
            return _DWARF[number]
        return "ra" if number == 16 else f"dwarf{number}"

    def may_restart_syscall(self, orig: int | None) -> bool:
        return orig is not None and orig >= 0  # orig_rax is -1 outside a system call

    def kernel_code_style(
        self,
        kernel_symbol: Callable[[str], int | None],
        read_pointer: Callable[[int], int | None],
        read_text: Callable[[int, int], bytes],
    ) -> CodeStyle:
        return CodeStyle(
            jump_stub=True,
            return_thunk=_kernel_return_thunk(kernel_symbol, read_pointer, read_text),
            ftrace_entry=True,
        )


_X86_64_REGS = frozenset(
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"]
    + [f"r{i}" for i in range(8, 16)]
    + ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp"]
    + [f"r{i}d" for i in range(8, 16)]
)

ARCH = X86_64(
    name="x86_64",
    aliases=("x86_64", "amd64", "x86-64", "x64"),
    bits=64,
    endian="little",
    elf_machine="EM_X86_64",
    elf_machine_number=62,
    llvm_triple="x86_64-linux-gnu",
    insn_align=1,
    max_insn_len=15,
    capstone=(3, 8),  # CS_ARCH_X86, CS_MODE_64 (capstone 5)
    keystone=("KS_ARCH_X86", "KS_MODE_64"),
    kbuild_arch="x86_64",
    cross_compile="x86_64-linux-gnu-",
    syscall_insn_len=2,
    # struct user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
    # orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs
    regs=RegsLayout(words=27, pc=16, sp=19, ret=10, orig=15, link=None),
    plt_header=16,
    kernel_mechanism="text_poke_bp+stub",
    stub_jump_len=5,
    registers=_X86_64_REGS,
)
