"""The hand-written intent encoders, checked against keystone, llvm-mc and capstone.

Every encoder returns the assembly text it stands for with its bytes; the
sweeps assemble that text with keystone and with ``llvm-mc`` (one process
per batch of cases) and require the same bytes, then decode the bytes with
capstone and run them on a tiny register model to check the value landed
in the register.  ``KNOCKOUT_REQUIRE_LLVM_MC=1`` turns a missing llvm-mc
into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from knockout.arch import CodeStyle, aarch64, get_arch, x86_64
from knockout.asm import Encoded, asm, disasm
from knockout.errors import BadInput

LLVM_MC = shutil.which("llvm-mc") or "/usr/bin/llvm-mc"
HAVE_LLVM_MC = os.path.exists(LLVM_MC)
needs_llvm_mc = pytest.mark.skipif(
    not HAVE_LLVM_MC and not os.environ.get("KNOCKOUT_REQUIRE_LLVM_MC"),
    reason="llvm-mc not installed (apt-get install llvm); KNOCKOUT_REQUIRE_LLVM_MC=1 forces",
)
try:
    import keystone  # noqa: F401

    HAVE_KEYSTONE = True
except ImportError:  # no wheel for aarch64 hosts: llvm-mc and capstone still check
    HAVE_KEYSTONE = False

MASK64 = (1 << 64) - 1
# no shrinking: each example is a batch of cases run through llvm-mc, and the
# assertion messages already name the failing instruction
SWEEP = settings(
    max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate]
)


def llvm_mc(triple: str, texts: list[str]) -> list[bytes]:
    """Assemble one instruction per entry of ``texts`` in one llvm-mc run."""
    prefix = [".intel_syntax noprefix"] if triple == "x86_64" else []
    out = subprocess.run(
        [LLVM_MC, f"--triple={triple}", "-show-encoding"],
        input="\n".join(prefix + texts) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    encodings = [
        bytes(int(b, 16) for b in m.group(1).split(","))
        for m in re.finditer(r"encoding: \[([^\]]*)\]", out)
    ]
    assert len(encodings) == len(texts), out
    return encodings


def joined(code: list[Encoded]) -> bytes:
    return b"".join(e.data for e in code)


def keystone_agrees(text: str, data: bytes, arch: str, vma: int = 0) -> bool:
    """keystone assembles ``text`` to ``data`` (True when keystone is not installed)."""
    return not HAVE_KEYSTONE or asm(text, arch, vma) == data


def check_against_llvm_mc(triple: str, cases: list[list[Encoded]]) -> None:
    """Every instruction of every case encodes as llvm-mc encodes its text."""
    texts = [e.text for code in cases for e in code]
    for encoded, expected in zip(
        [e for code in cases for e in code], llvm_mc(triple, texts), strict=True
    ):
        assert encoded.data == expected, encoded.text


# --- register models over capstone's output -------------------------------------------


def _imm(text: str) -> int:
    return int(text.strip().lstrip("#"), 0)


def run_a64(data: bytes) -> dict[int, int]:
    """Execute mov/movz/movn/movk/orr-alias sequences; ``{xN: value}``."""
    regs: dict[int, int] = {}
    for insn in disasm(data, "arm64"):
        ops = [o.strip() for o in insn.op_str.split(",")]
        n, bits = aarch64.parse_reg(ops[0])
        mask = (1 << bits) - 1
        shift = int(ops[2].split("#")[1], 0) if len(ops) > 2 else 0
        imm = _imm(ops[1])
        if insn.mnemonic == "mov":
            value = imm & mask
        elif insn.mnemonic == "movz":
            value = (imm << shift) & mask
        elif insn.mnemonic == "movn":
            value = ~(imm << shift) & mask
        elif insn.mnemonic == "movk":
            value = (regs[n] & ~(0xFFFF << shift) | imm << shift) & mask
        else:
            raise AssertionError(f"unexpected {insn.text}")
        regs[n] = value  # a w write zero-extends into x
    return regs


def run_x86(data: bytes) -> tuple[dict[int, int], list[str]]:
    """Execute mov/movabs/xor/push/pop; ``({reg number: value}, other mnemonics)``."""
    regs: dict[int, int] = {}
    stack: list[int] = []
    other = []
    for insn in disasm(data, "x86_64"):
        ops = [o.strip() for o in insn.op_str.split(",")]
        if insn.mnemonic in ("mov", "movabs"):
            n, bits = x86_64.parse_reg(ops[0])
            regs[n] = _imm(ops[1]) & ((1 << bits) - 1)
        elif insn.text == "xor eax, eax":
            regs[0] = 0
        elif insn.mnemonic == "push":
            stack.append(_imm(ops[0]) & MASK64)
        elif insn.mnemonic == "pop":
            regs[x86_64.parse_reg(ops[0])[0]] = stack.pop()
        else:
            other.append(insn.mnemonic)
    return regs, other


# --- strategies -------------------------------------------------------------------------


def values(bits: int) -> st.SearchStrategy[int]:
    """Values a register of ``bits`` takes, weighted to the encodings' edges."""
    top = (1 << bits) - 1
    chunky = st.tuples(
        st.lists(st.sampled_from([0, 0xFFFF, 0x1234, 0x8000, 1]), min_size=4, max_size=4)
    ).map(lambda t: sum(c << (16 * i) for i, c in enumerate(t[0])) & top)
    return st.one_of(
        st.integers(-(1 << (bits - 1)), top),
        st.integers(-300, 300),
        st.sampled_from([0, 1, -1, top, 1 << (bits - 1), 0x7FFFFFFF, 0x80000000, 0xFFFF0000]),
        st.integers(0, bits - 1).map(lambda s: (1 << s) & top),
        chunky,
        st.sampled_from([0x5555555555555555, 0x00FF00FF00FF00FF, 0x0F0F0F0F0F0F0F0F]).map(
            lambda v: v & top
        ),
    )


def a64_reg_value() -> st.SearchStrategy[tuple[str, int]]:
    return st.sampled_from(["x", "w"]).flatmap(
        lambda k: st.tuples(
            st.integers(0, 30).map(lambda n: f"{k}{n}"), values(64 if k == "x" else 32)
        )
    )


X86_REGS = sorted(r for r in x86_64._REG64 + x86_64._REG32)


def x86_reg_value() -> st.SearchStrategy[tuple[str, int]]:
    return st.sampled_from(X86_REGS).flatmap(
        lambda r: st.tuples(st.just(r), values(32 if x86_64.parse_reg(r)[1] == 32 else 64))
    )


# --- the seed's words -------------------------------------------------------------------


def test_seed_words_exact() -> None:
    assert joined(aarch64.mov_imm("x28", 0)) == (0xD280001C).to_bytes(4, "little")
    assert joined(aarch64.mov_imm("x0", 0)) == (0xD2800000).to_bytes(4, "little")
    assert joined(aarch64.mov_imm("w0", 0)) == (0x52800000).to_bytes(4, "little")
    assert joined(aarch64.encode_return(0)) == bytes.fromhex("000080d2c0035fd6")
    assert aarch64.word(aarch64.RET) == (0xD65F03C0).to_bytes(4, "little")


def test_x86_return_forms() -> None:
    assert joined(x86_64.encode_return(0, 0)) == bytes.fromhex("31c0c3")
    assert joined(x86_64.encode_return(7, 0)) == bytes.fromhex("b807000000c3")
    assert joined(x86_64.encode_return(-1, 0)) == bytes.fromhex("48c7c0ffffffffc3")
    code = x86_64.encode_return(0, 0x1000, return_thunk=0x2000)
    assert [i.text for i in disasm(joined(code), "x86_64", 0x1000)] == [
        "xor eax, eax",
        "jmp 0x2000",
    ]


# --- sweeps ----------------------------------------------------------------------------


@needs_llvm_mc
@SWEEP
@given(st.lists(a64_reg_value(), min_size=40, max_size=40))
def test_a64_mov_imm_sweep(cases: list[tuple[str, int]]) -> None:
    codes = [aarch64.mov_imm(reg, value) for reg, value in cases]
    check_against_llvm_mc("aarch64", codes)
    for (reg, value), code in zip(cases, codes, strict=True):
        data = joined(code)
        assert keystone_agrees("; ".join(e.text for e in code), data, "arm64"), code
        n, bits = aarch64.parse_reg(reg)
        assert run_a64(data) == {n: value & ((1 << bits) - 1)}
        assert len(code) <= 4


@needs_llvm_mc
@SWEEP
@given(st.lists(st.tuples(values(64), st.sampled_from([None, "a", "b"])), min_size=30, max_size=30))
def test_a64_return_sweep(cases: list[tuple[int, str | None]]) -> None:
    codes = [aarch64.encode_return(value, pac=pac) for value, pac in cases]
    check_against_llvm_mc("aarch64", codes)
    for (value, pac), code in zip(cases, codes, strict=True):
        insns = disasm(joined(code), "arm64")
        tail = [i.text for i in insns if not i.mnemonic.startswith("mov")]
        assert tail == ([f"auti{pac}sp"] if pac else []) + ["ret"]
        movs = joined(code)[: 4 * (len(insns) - len(tail))]
        assert run_a64(movs) == {0: value & MASK64}


@needs_llvm_mc
@SWEEP
@given(st.lists(x86_reg_value(), min_size=40, max_size=40))
def test_x86_mov_imm_sweep(cases: list[tuple[str, int]]) -> None:
    codes = [x86_64.mov_imm(reg, value) for reg, value in cases]
    check_against_llvm_mc("x86_64", codes)
    for (reg, value), code in zip(cases, codes, strict=True):
        data = joined(code)
        assert keystone_agrees(code[0].text, data, "x86_64")
        n, bits = x86_64.parse_reg(reg)
        regs, other = run_x86(data)
        # a 32-bit write zero-extends: the 64-bit register holds exactly the pattern
        assert regs == {n: value & ((1 << bits) - 1)} and not other
        pattern = value & MASK64
        assert len(data) <= (
            6 if bits == 32 or pattern < 1 << 32 else 7 if pattern >= 0xFFFFFFFF80000000 else 10
        )


@needs_llvm_mc
@SWEEP
@given(st.lists(st.one_of(st.none(), values(64), st.integers(-128, 300)), min_size=30, max_size=30))
def test_x86_skip_call_and_return_sweep(cases: list[int | None]) -> None:
    skips = [x86_64.encode_skip_call(v) for v in cases]
    returns = [x86_64.encode_return(v or 0, 0) for v in cases]
    check_against_llvm_mc("x86_64", skips + returns)
    for value, skip, ret in zip(cases, skips, returns, strict=True):
        want = (value or 0) & MASK64
        regs, other = run_x86(joined(skip))
        assert regs == {0: want} and not other
        regs, other = run_x86(joined(ret))
        assert regs == {0: want} and other == ["ret"]
        assert keystone_agrees("; ".join(e.text for e in skip), joined(skip), "x86_64")
        if value is not None and -128 <= value < 0:
            assert len(joined(skip)) == 3  # push imm8; pop rax


@SWEEP
@given(st.integers(0, 0x3FFFFFFF), st.integers(0, 0x3FFFFFFF))
def test_x86_jmp_thunk_matches_keystone(source: int, destination: int) -> None:
    code = x86_64.encode_return(0, source, return_thunk=destination)
    jmp = code[-1]
    assert int(disasm(jmp.data, "x86_64", source + 2)[0].op_str, 16) == destination
    if abs(destination - (source + 4)) > 200:  # keystone picks jmp rel8 when it can
        assert keystone_agrees(f"jmp {destination:#x}", jmp.data, "x86_64", vma=source + 2)


def test_x86_jmp_out_of_reach() -> None:
    with pytest.raises(BadInput, match="cannot reach 0x100000000"):
        x86_64.encode_return(0, 0, return_thunk=1 << 32)


@pytest.mark.parametrize("n", range(1, 25))
def test_x86_nops_are_canonical(n: int) -> None:
    insns = disasm(x86_64.nops(n), "x86_64")
    assert sum(i.size for i in insns) == n
    assert all(i.mnemonic == "nop" and i.size <= 9 for i in insns)


def test_x86_nops_match_the_sdm_lengths_longest_first() -> None:
    sizes = [i.size for i in disasm(x86_64.nops(20), "x86_64")]
    assert sizes == [9, 9, 2]
    assert x86_64.nops(5) == x86_64.FENTRY_NOP  # the nop ftrace leaves is the 5-byte one


def test_a64_skip_call() -> None:
    assert joined(aarch64.encode_skip_call(None)) == aarch64.word(aarch64.NOP)
    assert joined(aarch64.encode_skip_call(0)) == bytes.fromhex("000080d2")
    with pytest.raises(
        BadInput, match="needs 2 instructions in x0 but this cut replaces exactly one"
    ):
        aarch64.encode_skip_call(0x12345)


@SWEEP
@given(st.integers(1, 63).flatmap(lambda s: st.tuples(st.just(s), st.integers(0, 63))))
def test_a64_bitmask_immediates_round_trip(shape: tuple[int, int]) -> None:
    ones, rot = shape
    pattern = (((1 << ones) - 1) << rot | ((1 << ones) - 1) >> (64 - rot)) & MASK64
    code = aarch64.mov_imm("x1", pattern)
    assert len(code) == 1 and run_a64(joined(code)) == {1: pattern}


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoder", "reg", "value", "message"),
    [
        (aarch64.mov_imm, "x31", 0, "no general-purpose register 'x31'; use x0..x30"),
        (aarch64.mov_imm, "sp", 0, "no general-purpose register 'sp'"),
        (aarch64.mov_imm, "w3", 1 << 32, r"does not fit w3 \(32 bits\); use a value in"),
        (aarch64.mov_imm, "x3", 1 << 64, r"does not fit x3 \(64 bits\)"),
        (aarch64.mov_imm, "x3", -(1 << 63) - 1, r"does not fit x3"),
        (x86_64.mov_imm, "r16", 0, "no general-purpose register 'r16'; use one of rax..r15"),
        (x86_64.mov_imm, "ax", 0, "no general-purpose register 'ax'"),
        (x86_64.mov_imm, "ebx", -(1 << 31) - 1, r"does not fit ebx \(32 bits\)"),
        (x86_64.mov_imm, "rbx", 1 << 64, r"does not fit rbx \(64 bits\)"),
    ],
)
def test_bad_registers_and_values(encoder, reg, value, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=message):
        encoder(reg, value)


def test_a64_set_single_refuses_wide_values() -> None:
    with pytest.raises(BadInput, match=r"0x123456789 needs 3 instructions in x5"):
        aarch64.mov_imm("x5", 0x123456789, single=True)
    assert len(aarch64.mov_imm("x5", 0x123456789)) == 3


@pytest.mark.parametrize("isa", [x86_64, aarch64])
def test_encoders_accept_exactly_the_arch_tables_registers(isa: object) -> None:
    arch = get_arch("x86_64" if isa is x86_64 else "aarch64")
    candidates = set(arch.registers) | {"sp", "xzr", "wzr", "x31", "rip", "ax", "al", "r16", "lr"}
    accepted = set()
    for reg in candidates:
        try:
            isa.parse_reg(reg)  # type: ignore[attr-defined]
        except BadInput:
            continue
        accepted.add(reg)
    assert accepted == set(arch.registers)


# --- the search's encoders: xor zeroing, freeing the stack, return-at, forced branches ------


@needs_llvm_mc
def test_x86_xor_zero_and_add_rsp_match_llvm_mc() -> None:
    zeros = [x86_64.xor_zero(r) for r in X86_REGS]
    adds = [[x86_64.add_rsp(n)] for n in (8, 0x48, 127, 128, 0x200, 0x12345)]
    check_against_llvm_mc("x86_64", zeros + adds)
    for reg, code in zip(X86_REGS, zeros, strict=True):
        n, _bits = x86_64.parse_reg(reg)
        assert len(joined(code)) == (3 if n >= 8 else 2)
    assert [len(a[0].data) for a in adds] == [4, 4, 4, 7, 7, 7]
    with pytest.raises(BadInput, match="cannot free 0 bytes"):
        x86_64.add_rsp(0)


@needs_llvm_mc
def test_a64_add_sp_matches_llvm_mc() -> None:
    cases = [[aarch64.add_sp(n)] for n in (16, 0x30, 0xFFF, 0x1000, 0x2000, 0xFFF000)]
    check_against_llvm_mc("aarch64", cases)
    with pytest.raises(BadInput, match="too large"):
        aarch64.add_sp(0x1001)


@SWEEP
@given(st.integers(0, 0xFFFF), st.integers(-100, 0x10000), st.one_of(st.none(), values(64)))
def test_x86_return_at_lands_where_asked(at: int, delta: int, value: int | None) -> None:
    """Decoded back: rax set (or kept), the jump's target the epilogue, rel8 where it reaches."""
    epilogue = max(at + delta, 0)
    for relocatable in (False, True):
        code = x86_64.encode_return_at(value, at, epilogue, relocatable=relocatable)
        insns = disasm(joined(code), "x86_64", at)
        assert len(insns) == len(code)
        assert x86_64.branch_target(insns[-1]) == epilogue
        regs, other = run_x86(joined(code[:-1]))
        assert regs == ({} if value is None else {0: value & MASK64}) and not other
        short = -128 <= epilogue - (insns[-1].address + 2) < 128
        assert insns[-1].size == (2 if short and not relocatable else 5)


def test_force_branch_encodings() -> None:
    je8 = disasm(bytes.fromhex("7410"), "x86_64", 0x1000)[0]
    je32 = disasm(bytes.fromhex("0f8400100000"), "x86_64", 0x1000)[0]
    assert joined(x86_64.encode_force_branch(je8, True)).hex() == "eb10"
    assert joined(x86_64.encode_force_branch(je8, False)) == b""
    relocatable = x86_64.encode_force_branch(je8, True, relocatable=True)
    assert disasm(joined(relocatable), "x86_64", 0x1000)[0].text == "jmp 0x1012"
    assert disasm(joined(x86_64.encode_force_branch(je32, True)), "x86_64", 0x1000)[0].op_str == (
        "0x2006"
    )
    with pytest.raises(BadInput, match="not a conditional jump"):
        x86_64.encode_force_branch(disasm(bytes.fromhex("eb10"), "x86_64")[0], True)
    arch = get_arch("arm64")
    for word_, target in ((0xB4000060, 0x100C), (0x54000080, 0x1010), (0x36080040, 0x1008)):
        branch = disasm(aarch64.word(word_), "arm64", 0x1000)[0]  # cbz, b.eq, tbz
        assert arch.is_conditional_branch(branch)
        (taken,) = arch.force_branch(branch, True, CodeStyle())
        assert disasm(taken.data, "arm64", 0x1000)[0].text == f"b #{target:#x}"
        assert arch.force_branch(branch, False, CodeStyle()) == []
