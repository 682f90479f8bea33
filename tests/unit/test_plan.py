"""plan_cut / plan_at on real code: functions compiled by the test and read from the ELF.

Three builds of one C file: x86_64 "kernel-like" (``endbr64``, the 5-byte
``__fentry__`` nop, returns through ``__x86_return_thunk``), x86_64 plain
(``-O2 -fomit-frame-pointer``), and aarch64 with pointer authentication and
BTI (skipped without ``aarch64-linux-gnu-gcc``).
"""

from __future__ import annotations

import functools
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from hypothesis import given, settings
from hypothesis import strategies as st

from knockout.arch import aarch64, get_arch, x86_64
from knockout.asm import Insn, disasm
from knockout.cuts import (
    Cut,
    ForceBranch,
    Identity,
    Intent,
    RawBytes,
    Return,
    ReturnAt,
    SetReg,
    Skip,
    SkipCall,
    describe_intent,
)
from knockout.errors import BadInput, NotFound, UnsafeCut
from knockout.plan import CodeStyle, plan_at, plan_cut, plan_cuts, stub_code
from knockout.symbols import Location, Symbol

SOURCE = r"""
static int counter;
__attribute__((noinline)) int helper(int x) { return x * 7 + 1; }
int work(int *p, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += p[i] * 3 + (s >> 3);
    return s;
}
long big(long x) { return x * 0x123456789L + 7; }
int caller(int x) { return helper(x) + helper(x + 1) + 5; }
int bump(void) { counter += 1; return counter; }
int pick(int k, int a) {
    switch (k) {
    case 0: return a + 1; case 1: return a * 3; case 2: return a - 7; case 3: return a ^ 5;
    case 4: return a << 2; case 5: return a / 3; case 6: return 99; default: return -1;
    }
}
"""
THUNK = '__asm__(".globl __x86_return_thunk\\n__x86_return_thunk: ret; int3\\n");\n'
COMMON = ["-O2", "-nostdlib", "-w"]
KERNEL_FLAGS = "-fcf-protection=full -pg -mfentry -mnop-mcount -mfunction-return=thunk-extern"
STATIC = "-fno-pic -no-pie -static -Wl,-e,work"
ARM64_FLAGS = "-fomit-frame-pointer -mbranch-protection=standard -fPIC -shared -fvisibility=hidden"
HOST = platform.machine()
X86_GCC = "gcc" if HOST == "x86_64" else "x86_64-linux-gnu-gcc"
ARM64_GCC = "gcc" if HOST == "aarch64" else "aarch64-linux-gnu-gcc"
BUILDS = {
    "kernel": (X86_GCC, [*COMMON, *KERNEL_FLAGS.split(), *STATIC.split()]),
    "plain": (X86_GCC, [*COMMON, "-fomit-frame-pointer", "-fcf-protection=none", *STATIC.split()]),
    "arm64": (ARM64_GCC, [*COMMON, *ARM64_FLAGS.split()]),
}


@dataclass
class Elf:
    """The functions of one compiled build."""

    arch: str
    symbols: dict[str, tuple[int, int]]
    sections: list[tuple[int, bytes]]
    path: Path = Path()

    def code(self, name: str) -> tuple[bytes, int]:
        address, size = self.symbols[name]
        for start, data in self.sections:
            if start <= address < start + len(data):
                return data[address - start : address - start + size], address
        raise KeyError(name)

    def insns(self, name: str) -> list[Insn]:
        code, address = self.code(name)
        return disasm(code, self.arch, address)

    def plan(self, name: str, address: int, intent: Intent, style: CodeStyle | None = None) -> Cut:
        code, start = self.code(name)
        return plan_cut(
            self.arch, code, start, address, intent, target="test", location=name, style=style
        )


@pytest.fixture(scope="module", params=list(BUILDS))
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Elf:
    return _build(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=list(BUILDS))
def build_path(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Elf, Path]:
    e = _build(request.param, tmp_path_factory)
    return e, e.path


def _build(name: str, tmp_path_factory: pytest.TempPathFactory) -> Elf:
    compiler, flags = BUILDS[name]
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed (make setup installs it)")
    directory = tmp_path_factory.mktemp(name)
    source = directory / "f.c"
    source.write_text((THUNK if name == "kernel" else "") + SOURCE)
    out = directory / "f.elf"
    subprocess.run([compiler, *flags, "-o", str(out), str(source)], check=True)
    e = _read_elf(out)
    e.path = out
    return e


def _read_elf(path: Path) -> Elf:
    with path.open("rb") as f:
        elf = ELFFile(f)
        arch = get_arch("arm64" if elf["e_machine"] == "EM_AARCH64" else "x86_64").name
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = {
            s.name: (s["st_value"], s["st_size"])
            for s in symtab.iter_symbols()
            if s["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE") and s.name
        }
        sections = [
            (s["sh_addr"], s.data())
            for s in elf.iter_sections()
            if s["sh_flags"] & 0x4 and s["sh_type"] == "SHT_PROGBITS"
        ]
    return Elf(arch, symbols, sections)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Elf:
    return _build("kernel", tmp_path_factory)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Elf:
    return _build("plain", tmp_path_factory)


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Elf:
    return _build("arm64", tmp_path_factory)


STUB = CodeStyle(jump_stub=True, ftrace_entry=True)  # how the kernel module writes


def first_cuttable(e: Elf, name: str) -> int:
    """Index of the first instruction after endbr64/fentry or bti/paciasp, found by mnemonic."""
    skip = {"endbr64", "bti", "paciasp", "pacibsp"}
    insns = e.insns(name)
    i = 0
    while i < len(insns) and (
        insns[i].mnemonic in skip or (insns[i].data == bytes.fromhex("0f1f440000") and i <= 1)
    ):
        i += 1
    return i


def where(name: str, start: int, address: int) -> str:
    return name if address == start else f"{name}+{address - start:#x}"


def wx(name: str, start: int, address: int) -> str:
    """:func:`where` as a regular expression."""
    return re.escape(where(name, start, address))


# --- properties every plan has, on every build ---------------------------------------------


def check_invariants(e: Elf, name: str, cut: Cut) -> None:
    code, start = e.code(name)
    assert len(cut.new) == len(cut.old) == cut.size
    assert cut.old == code[cut.address - start : cut.end - start]
    boundaries = {i.address for i in e.insns(name)} | {e.insns(name)[-1].end}
    assert cut.address in boundaries and cut.end in boundaries
    inside = [i for i in e.insns(name) if cut.address <= i.address < cut.end]
    assert cut.instructions == len(inside)
    assert cut.location == where(name, start, cut.address)


@pytest.mark.parametrize("function", ["work", "caller", "bump", "big", "helper"])
def test_every_intent_at_every_instruction(build: Elf, function: str) -> None:
    """Sweep: each intent at each instruction either plans with the invariants or refuses."""
    planned = refused = 0
    for insn in build.insns(function):
        for intent in (Skip(), Identity(), SetReg("w0" if build.arch == "aarch64" else "eax", 1)):
            try:
                cut = build.plan(function, insn.address, intent)
            except (BadInput, UnsafeCut) as exc:
                assert "\n" not in str(exc)
                refused += 1
                continue
            check_invariants(build, function, cut)
            planned += 1
            if isinstance(intent, Identity):
                assert cut.new == cut.old
    assert planned and refused  # the entry prefix is refused; the body is not


# --- return -------------------------------------------------------------------------------


def test_return_after_endbr_and_fentry(kernel: Elf) -> None:
    code, start = kernel.code("work")
    cut = kernel.plan("work", start, Return(0))
    assert cut.address == start + 9 and cut.location == "work+0x9"
    assert code[:9] == x86_64.ENDBR64 + x86_64.FENTRY_NOP
    texts = [i.text for i in disasm(cut.new, "x86_64", cut.address)]
    assert texts[:2] == ["xor eax, eax", "ret"] and all(t.startswith("nop") for t in texts[2:])
    check_invariants(kernel, "work", cut)
    assert kernel.plan("work", start + 9, Return(0)) == cut


def test_return_through_the_thunk(kernel: Elf) -> None:
    thunk = kernel.symbols["__x86_return_thunk"][0]
    assert any(i.text == f"jmp {thunk:#x}" for i in kernel.insns("big"))  # the build uses it
    _, start = kernel.code("big")
    cut = kernel.plan("big", start, Return(-1), CodeStyle(return_thunk=thunk))
    insns = disasm(cut.new, "x86_64", cut.address)
    assert [i.text for i in insns[:2]] == ["mov rax, 0xffffffffffffffff", f"jmp {thunk:#x}"]
    check_invariants(kernel, "big", cut)


def test_return_elsewhere_than_the_entry_is_refused(kernel: Elf) -> None:
    insns = kernel.insns("work")
    later = insns[first_cuttable(kernel, "work") + 1].address
    with pytest.raises(
        BadInput, match=r"a return cut goes at the entry of work \(it lands at work\+0x9\)"
    ):
        kernel.plan("work", later, Return(0))


def test_return_plain_starts_at_the_symbol(plain: Elf) -> None:
    _, start = plain.code("work")
    cut = plain.plan("work", start, Return(0x123456789))
    assert cut.address == start and cut.location == "work"
    assert disasm(cut.new, "x86_64")[0].text == "movabs rax, 0x123456789"
    assert cut.instructions >= 2  # 11 bytes never fit one instruction here
    check_invariants(plain, "work", cut)


def test_return_on_arm64_keeps_the_landing_pad(arm64: Elf) -> None:
    _, helper = arm64.code("helper")
    assert arm64.insns("helper")[0].text == "bti c"
    cut = arm64.plan("helper", helper, Return(0))
    assert cut.address == helper + 4
    assert cut.new == (0xD2800000).to_bytes(4, "little") + (0xD65F03C0).to_bytes(4, "little")
    _, caller = arm64.code("caller")
    assert arm64.insns("caller")[0].mnemonic == "paciasp"
    cut = arm64.plan("caller", caller, Return(-2))
    assert [i.text for i in disasm(cut.new, "arm64")] == ["mov x0, #-2", "autiasp", "ret"]
    assert cut.instructions == 3
    check_invariants(arm64, "caller", cut)


# --- set, skip, skip-call, bytes --------------------------------------------------------------


def test_set_fits_or_is_refused_with_the_reason(kernel: Elf) -> None:
    _, start = kernel.code("caller")
    insns = kernel.insns("caller")
    call = next(i for i in insns if i.mnemonic == "call")
    cut = kernel.plan("caller", call.address, SetReg("eax", 7))
    assert cut.new == bytes.fromhex("b807000000") and cut.instructions == 1
    short = next(i for i in insns[first_cuttable(kernel, "caller") :] if i.size == 3)
    at = wx("caller", start, short.address)
    with pytest.raises(
        BadInput,
        match=rf"^movabs rbx, 0x123456789 needs 10 bytes but the instruction at {at} has 3; "
        "pick a value that fits in 32 bits",
    ):
        kernel.plan("caller", short.address, SetReg("rbx", 0x123456789))
    with pytest.raises(BadInput, match=rf"needs 5 bytes but the instruction at {at} has 3"):
        kernel.plan("caller", short.address, SetReg("ebx", 5))
    with pytest.raises(BadInput, match="no general-purpose register 'x28'"):
        kernel.plan("caller", call.address, SetReg("x28", 0))


def test_set_arm64_the_seed_way(arm64: Elf) -> None:
    load = next(i for i in arm64.insns("bump") if i.mnemonic == "ldr")
    cut = arm64.plan("bump", load.address, SetReg("w0", 0))
    assert cut.new == (0x52800000).to_bytes(4, "little") and cut.old == load.data
    cut = arm64.plan("bump", load.address, SetReg("x28", 0))
    assert cut.new == (0xD280001C).to_bytes(4, "little")
    with pytest.raises(
        BadInput, match="needs 3 instructions in x5 but this cut replaces exactly one"
    ):
        arm64.plan("bump", load.address, SetReg("x5", 0x123456789))


def test_offset_inside_an_instruction_names_the_boundaries(build: Elf) -> None:
    _, start = build.code("work")
    insn = next(i for i in build.insns("work") if i.size > 1)
    message = (
        f"{where('work', start, insn.address + 1)} is inside the {insn.size}-byte instruction at "
        f"{where('work', start, insn.address)}; use {where('work', start, insn.address)} "
        f"or {where('work', start, insn.end)}"
    )
    with pytest.raises(BadInput) as caught:
        build.plan("work", insn.address + 1, Skip())
    assert str(caught.value) == message


def test_offset_past_the_end(build: Elf) -> None:
    code, start = build.code("work")
    with pytest.raises(BadInput, match=rf"work\+{len(code):#x} is outside work"):
        build.plan("work", start + len(code), Skip())
    with pytest.raises(BadInput, match=r"work-0x4 is outside work"):
        build.plan("work", start - 4, Skip())


def test_skip_call(build: Elf) -> None:
    isa = x86_64 if build.arch == "x86_64" else aarch64
    insns = build.insns("caller")
    call = next(i for i in insns if isa.is_call(i))
    cut = build.plan("caller", call.address, SkipCall())
    texts = [i.text for i in disasm(cut.new, build.arch)]
    assert texts[0] == ("xor eax, eax" if build.arch == "x86_64" else "nop")
    assert all(t.startswith("nop") for t in texts[1:])
    cut = build.plan("caller", call.address, SkipCall(5))
    assert disasm(cut.new, build.arch)[0].text in ("mov eax, 5", "mov x0, #5")
    other = next(i for i in insns[first_cuttable(build, "caller") :] if not isa.is_call(i))
    with pytest.raises(BadInput, match=rf"is '{re.escape(other.text)}', not a call; use --skip"):
        build.plan("caller", other.address, SkipCall())
    with pytest.raises(BadInput):
        build.plan("caller", call.address, SkipCall(0x123456789))


def test_skip_call_small_negative_fits_x86(kernel: Elf) -> None:
    call = next(i for i in kernel.insns("caller") if i.mnemonic == "call")
    cut = kernel.plan("caller", call.address, SkipCall(-1))
    assert [i.text for i in disasm(cut.new, "x86_64")][:2] == ["push -1", "pop rax"]


def test_raw_bytes_must_end_on_a_boundary(build: Elf) -> None:
    _, start = build.code("work")
    insns = build.insns("work")
    k = first_cuttable(build, "work")
    a, b = insns[k], insns[k + 1]
    nop = x86_64.nops if build.arch == "x86_64" else aarch64.nops
    cut = build.plan("work", a.address, RawBytes(nop(a.size + b.size)))
    assert cut.instructions == 2
    if build.arch == "x86_64" and b.size > 1:
        with pytest.raises(
            BadInput,
            match=rf"end inside the {b.size}-byte instruction at {wx('work', start, b.address)}; "
            rf"give {a.size} or {a.size + b.size} bytes",
        ):
            build.plan("work", a.address, RawBytes(nop(a.size + 1)))


def test_branch_into_the_cut_is_refused(build: Elf) -> None:
    isa = x86_64 if build.arch == "x86_64" else aarch64
    insns = build.insns("work")
    k0 = first_cuttable(build, "work")
    targets = {isa.branch_target(i) for i in insns} - {None}
    k = next(k for k in range(k0 + 1, len(insns)) if insns[k].address in targets)
    before, target = insns[k - 1], insns[k]
    nop = x86_64.nops if build.arch == "x86_64" else aarch64.nops
    with pytest.raises(UnsafeCut, match=r"branches to work\+0x[0-9a-f]+, inside the cut"):
        build.plan("work", before.address, RawBytes(nop(before.size + target.size)))
    build.plan("work", target.address, RawBytes(nop(target.size)))  # starting there is fine


def test_entry_prefix_is_never_cut(kernel: Elf, arm64: Elf) -> None:
    """Inside the prefix: refused; at the function's start: placed after it, like --return."""
    _, start = kernel.code("work")
    with pytest.raises(
        UnsafeCut,
        match=r"^work\+0x4 is 'nop dword ptr \[rax \+ rax\]', which the entry needs"
        r" .* cut at work\+0x9",
    ):
        kernel.plan("work", start + 4, SetReg("eax", 0))
    assert kernel.plan("work", start, Skip()).location == "work+0x9"
    assert kernel.plan("work", start, Identity()).location == "work+0x9"
    assert kernel.plan("work", start, Return(0)).location == "work+0x9"
    _, start = arm64.code("caller")
    paciasp = next(i for i in arm64.insns("caller") if i.mnemonic == "paciasp")
    assert paciasp.address == start  # so only placement is seen here (see the ftrace-site test)
    assert arm64.plan("caller", start, Skip()).address == paciasp.end


# --- the kernel's jmp-to-stub style -------------------------------------------------------------


def _rip_or_relative(insn: Insn) -> bool:
    """Independent of knockout: capstone's operand details."""
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = True
    (full,) = cs.disasm(insn.data, insn.address)
    rel = capstone.CS_GRP_JUMP in full.groups or capstone.CS_GRP_CALL in full.groups
    rel = rel and full.operands[0].type == capstone.x86.X86_OP_IMM
    rip = any(
        op.type == capstone.x86.X86_OP_MEM and op.mem.base == capstone.x86.X86_REG_RIP
        for op in full.operands
    )
    return bool(rel or rip)


@pytest.mark.parametrize("function", ["work", "caller", "bump", "big", "helper"])
def test_stub_style_sweep(kernel: Elf, function: str) -> None:
    """Every Skip in stub style covers >= 5 bytes and displaces only movable code, or refuses."""
    insns = kernel.insns(function)
    outcomes = {"planned": 0, "refused": 0}
    for k in range(first_cuttable(kernel, function), len(insns)):
        try:
            cut = kernel.plan(function, insns[k].address, Skip(), STUB)
        except (BadInput, UnsafeCut):
            outcomes["refused"] += 1
            continue
        outcomes["planned"] += 1
        check_invariants(kernel, function, cut)
        assert cut.size >= 5
        displaced = [i for i in insns if insns[k].end <= i.address < cut.end]
        assert not any(_rip_or_relative(i) for i in displaced)
        assert cut.new == x86_64.nops(insns[k].size) + b"".join(i.data for i in displaced)
        stub = stub_code(cut, cut.address + 0x100000)
        decoded = disasm(stub, "x86_64", cut.address + 0x100000)
        assert decoded[-1].text == f"jmp {cut.end:#x}"
    assert outcomes["planned"] or function == "bump"


def test_stub_refuses_displacing_rip_relative_code(kernel: Elf) -> None:
    insns = kernel.insns("bump")
    k = next(k for k in range(len(insns) - 1) if insns[k].size < 5 and "rip" in insns[k + 1].op_str)
    _, start = kernel.code("bump")
    plan_in_place = kernel.plan("bump", insns[k].address, Skip())
    assert plan_in_place.instructions == 1
    with pytest.raises(
        UnsafeCut,
        match=rf"also displaces {wx('bump', start, insns[k + 1].address)}: .* relative to rip",
    ):
        kernel.plan("bump", insns[k].address, Skip(), STUB)


def test_stub_refuses_near_the_end(plain: Elf) -> None:
    last = plain.insns("bump")[-1]
    assert last.text == "ret"
    with pytest.raises(
        UnsafeCut, match=r"the jump to the stub needs 4 bytes from .* bump ends after"
    ):
        plain.plan("bump", last.address, Skip(), STUB)


def test_stub_refuses_functions_with_indirect_jumps(kernel: Elf) -> None:
    insns = kernel.insns("pick")
    k = next(k for k, i in enumerate(insns) if x86_64.is_indirect_jump(i)) - 1  # jump table
    kernel.plan("pick", insns[k].address, Identity())  # in place: fine
    with pytest.raises(UnsafeCut, match=r"is an indirect jump .* pick cannot be cut this way"):
        kernel.plan("pick", insns[k].address, Identity(), STUB)


def test_stub_return_through_thunk_relocates(kernel: Elf) -> None:
    thunk = kernel.symbols["__x86_return_thunk"][0]
    _, start = kernel.code("helper")
    cut = kernel.plan(
        "helper", start, Return(0), CodeStyle(jump_stub=True, ftrace_entry=True, return_thunk=thunk)
    )
    assert cut.size >= 5 and cut.address == start + 9
    stub_at = thunk + 0x7000
    decoded = disasm(stub_code(cut, stub_at), "x86_64", stub_at)
    assert [i.text for i in decoded[:2]] == ["xor eax, eax", f"jmp {thunk:#x}"]
    assert decoded[-1].text == f"jmp {cut.end:#x}"


def test_stub_style_is_ignored_on_arm64(arm64: Elf) -> None:
    load = next(i for i in arm64.insns("bump") if i.mnemonic == "ldr")
    assert arm64.plan("bump", load.address, Skip(), STUB).size == 4


# --- plan_at over a fake target ------------------------------------------------------------------


class FakeSymbols:
    def __init__(self, table: dict[str, Symbol]) -> None:
        self.table = table

    def resolve(self, spec: str) -> Location:
        name, _, offset = spec.partition("+")
        symbol = self.table[name]
        return Location(symbol.address + (int(offset, 0) if offset else 0), symbol)


class FakeTarget:
    """A target over a byte buffer; reads past it fail like an unmapped page."""

    def __init__(self, e: Elf, sized: bool, style: CodeStyle | None) -> None:
        self.arch = get_arch(e.arch)
        caller = e.symbols["caller"][0]
        self.base, self.memory = next((a, d) for a, d in e.sections if a <= caller < a + len(d))
        self.table = {n: Symbol(n, a, s if sized else 0) for n, (a, s) in e.symbols.items() if s}
        self.style = style
        self.reads: list[tuple[int, int]] = []

    @property
    def description(self) -> str:
        return "fake"

    def read(self, address: int, size: int) -> bytes:
        self.reads.append((address, size))
        off = address - self.base
        if not 0 <= off <= len(self.memory) - size:
            raise NotFound(f"cannot read {size} bytes at {address:#x}")
        return self.memory[off : off + size]

    def symbols(self) -> FakeSymbols:
        return FakeSymbols(self.table)

    def code_style(self) -> CodeStyle:
        return self.style or CodeStyle()


@pytest.mark.parametrize("sized", [True, False])
def test_plan_at_reads_the_function(kernel: Elf, sized: bool) -> None:
    target = FakeTarget(kernel, sized, None)
    call = next(i for i in kernel.insns("caller") if i.mnemonic == "call")
    _, start = kernel.code("caller")
    spec = f"caller+{call.address - start:#x}"
    cut = plan_at(target, spec, SkipCall())
    assert cut == kernel.plan("caller", call.address, SkipCall()).__class__(
        **{**kernel.plan("caller", call.address, SkipCall()).__dict__, "target": "fake"}
    )
    assert target.reads[0][0] == start
    if not sized:
        assert all(size <= 4096 for _, size in target.reads)


def test_plan_at_asks_the_target_for_its_style(kernel: Elf) -> None:
    target = FakeTarget(kernel, True, STUB)
    insns = kernel.insns("bump")
    k = next(k for k in range(len(insns) - 1) if insns[k].size < 5 and "rip" in insns[k + 1].op_str)
    _, start = kernel.code("bump")
    with pytest.raises(UnsafeCut, match="jump to the stub"):
        plan_at(target, f"bump+{insns[k].address - start:#x}", Skip())


def test_a_call_at_the_entry_is_ftrace_only_in_kernel_code(plain: Elf) -> None:
    _, start = plain.code("caller")
    first = plain.insns("caller")[0]
    assert first.mnemonic == "call"  # gcc knows helper keeps edi: no prologue at all
    assert plain.plan("caller", start, SkipCall()).instructions == 1
    assert plain.plan("caller", start, Return(0)).address == start
    kernel_code = CodeStyle(ftrace_entry=True)
    # every intent at the function's start lands where a return would: past ftrace's call
    assert plain.plan("caller", start, Return(0), kernel_code).address == first.end
    assert plain.plan("caller", start, Identity(), kernel_code).address == first.end
    assert STUB.ftrace_entry and not CodeStyle().ftrace_entry
    assert plain.plan("caller", start, Return(0), STUB).address == first.end


def test_stub_never_holds_a_call(kernel: Elf) -> None:
    call = next(i for i in kernel.insns("caller") if i.mnemonic == "call")
    kernel.plan("caller", call.address, Identity())  # in place: fine
    with pytest.raises(UnsafeCut, match=r"would hold 'call 0x[0-9a-f]+' .*: its return address"):
        kernel.plan("caller", call.address, Identity(), STUB)
    cut = kernel.plan("caller", call.address, SkipCall(), STUB)  # the call is gone: fine
    assert not any(i.mnemonic == "call" for i in disasm(cut.new, "x86_64"))


def test_stub_refuses_what_the_module_refuses_calls_and_traps(kernel: Elf) -> None:
    """The kernel module refuses a CALL, INT3, INT n or UD2 in a stub: the planner first.

    Each refusal is one line naming the instruction, where it is and why.
    """
    _, start = kernel.code("caller")
    insns = kernel.insns("caller")
    calls = [i for i in insns if x86_64.is_call(i)]
    # a short instruction right before a call: the 5-byte jmp would displace the call
    before = next(i for i in insns if i.size < 5 and i.end in {c.address for c in calls})
    call = next(c for c in calls if c.address == before.end)
    assert kernel.plan("caller", before.address, Skip()).instructions == 1  # in place: fine
    for intent in (Skip(), Identity()):
        with pytest.raises(UnsafeCut) as exc:
            kernel.plan("caller", before.address, intent, STUB)
        message = str(exc.value)
        assert "\n" not in message
        assert f"would hold '{call.text}' (at {where('caller', start, call.address)})" in message
        assert "its return address would point into the stub" in message
    # raw bytes with a call of any form, at a 5-byte instruction
    for raw in (call.data, bytes.fromhex("ffd0") + x86_64.nops(3)):  # call rel32, call rax
        kernel.plan("caller", call.address, RawBytes(raw))  # in place: fine
        with pytest.raises(UnsafeCut, match=r"would hold 'call [^']+' .*return address"):
            kernel.plan("caller", call.address, RawBytes(raw), STUB)
    # traps: the module looks BUG/WARN up by address and owns no INT3 in a stub
    four = next(i for i in insns[first_cuttable(kernel, "caller") :] if i.size == 4)
    traps = [("0f0b9090", "ud2"), ("cc909090", "int3"), ("cd039090", "int 3")]
    for hexed, text in traps:
        kernel.plan("caller", four.address, RawBytes(bytes.fromhex(hexed)))  # in place: fine
        with pytest.raises(UnsafeCut, match=rf"would hold '{text}' .*a trap") as exc:
            kernel.plan("caller", four.address, RawBytes(bytes.fromhex(hexed)), STUB)
        assert "\n" not in str(exc.value)
    # the same bytes without the trap plan fine in stub style
    assert kernel.plan("caller", four.address, RawBytes(x86_64.nops(4)), STUB).size >= 5


OBJDUMP = {"x86_64": "objdump", "aarch64": "aarch64-linux-gnu-objdump"}


def objdump_boundaries(e: Elf, path: Path, name: str) -> set[int]:
    """Instruction starts of ``name`` as binutils decodes them (independent of capstone)."""
    tool = shutil.which(OBJDUMP[e.arch])
    if tool is None:
        pytest.skip(f"{OBJDUMP[e.arch]} not installed")
    address, size = e.symbols[name]
    return _objdump(tool, path, address, size)


@functools.cache
def _objdump(tool: str, path: Path, address: int, size: int) -> set[int]:
    span = [f"--start-address={address:#x}", f"--stop-address={address + size:#x}"]
    out = subprocess.run(
        [tool, "-d", "--no-show-raw-insn", *span, str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(m.group(1), 16) for m in re.finditer(r"^\s+([0-9a-f]+):\t", out, re.M)}


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_offsets_against_objdump(build_path: tuple[Elf, Path], data: st.DataObject) -> None:
    """Any offset: a boundary objdump agrees on plans; any other names the enclosing one."""
    e, path = build_path
    name = data.draw(st.sampled_from(["work", "caller", "bump", "big", "pick"]))
    code, start = e.code(name)
    boundaries = objdump_boundaries(e, path, name)
    offset = data.draw(st.integers(0, len(code) - 1))
    address = start + offset
    try:
        cut = e.plan(name, address, Skip())
    except UnsafeCut as exc:
        assert address in boundaries
        assert "which the entry needs" in str(exc) or "the last instruction of" in str(exc)
        return
    except BadInput as exc:
        assert address not in boundaries
        before = max(b for b in boundaries if b < address)
        after = min([b for b in boundaries if b > address] + [start + len(code)])
        assert str(exc).endswith(f"use {where(name, start, before)} or {where(name, start, after)}")
        return
    assert address in boundaries
    assert cut.address == address or address == start  # the start: placed after the prefix
    assert cut.end in boundaries | {start + len(code)}


def test_raw_bytes_shorter_than_the_first_instruction(kernel: Elf) -> None:
    _, start = kernel.code("big")
    movabs = next(i for i in kernel.insns("big") if i.size == 10)
    at = wx("big", start, movabs.address)
    with pytest.raises(BadInput, match=rf"^3 bytes from {at} end inside .*; give 10 bytes$"):
        kernel.plan("big", movabs.address, RawBytes(b"\x90" * 3))
    with pytest.raises(BadInput, match="--bytes needs at least one byte"):
        kernel.plan("big", movabs.address, RawBytes(b""))
    code, _ = kernel.code("big")
    with pytest.raises(BadInput, match=r"run past the end of big"):
        kernel.plan("big", movabs.address, RawBytes(b"\x90" * len(code)))


def test_plan_at_with_the_real_symbol_table(kernel: Elf) -> None:
    from knockout.symbols import elf_symbols

    target = FakeTarget(kernel, True, None)
    table = elf_symbols(str(kernel.path))
    target.symbols = lambda: table  # type: ignore[method-assign,assignment,return-value]
    call = next(i for i in kernel.insns("caller") if i.mnemonic == "call")
    _, start = kernel.code("caller")
    cut = plan_at(target, f"caller+{call.address - start}", SkipCall(0))
    assert cut.address == call.address and cut.location == f"caller+{call.address - start:#x}"
    assert plan_at(target, "caller", Return(0)).location == "caller+0x9"
    with pytest.raises(BadInput, match="is inside the 5-byte instruction"):
        plan_at(target, f"caller+{call.address - start + 1:#x}", Skip())


def test_the_seed_cuts_on_a_shrink_slab_shaped_function() -> None:
    """The incident's aarch64 words, at its offsets (+296, +336), on assembled code."""
    pytest.importorskip("keystone", reason="keystone-engine has no wheel for this host")
    from knockout.asm import asm

    body = ["stp x29, x30, [sp, #-96]!", "mov x29, sp"] + ["add x1, x1, #1"] * 72
    body += ["ldr w0, [x21, #124]"] + ["add x1, x1, #1"] * 9  # +296
    body += ["ldr x28, [x0, #840]", "mov x0, x28", "ldp x29, x30, [sp], #96", "ret"]  # +336
    code = asm("\n".join(body), "arm64", vma=0xFFFF800010000000)
    base = 0xFFFF800010000000

    def plan(offset: int, intent: Intent) -> Cut:
        return plan_cut(
            "arm64", code, base, base + offset, intent, target="t", location="shrink_slab"
        )

    assert disasm(code[296:300], "arm64")[0].text == "ldr w0, [x21, #0x7c]"
    cut = plan(0, Return(0))
    assert cut.new == bytes.fromhex("000080d2c0035fd6") and cut.instructions == 2
    cut = plan(336, SetReg("x28", 0))
    assert cut.new == (0xD280001C).to_bytes(4, "little") and cut.location == "shrink_slab+0x150"
    cut = plan(296, SetReg("w0", 0))
    assert cut.new == (0x52800000).to_bytes(4, "little") and cut.location == "shrink_slab+0x128"
    with pytest.raises(BadInput, match=r"shrink_slab\+0x152 is inside the 4-byte instruction"):
        plan(338, SetReg("x28", 0))


def test_skipping_the_last_exit_is_refused(build: Elf) -> None:
    last = build.insns("bump")[-1]
    assert last.mnemonic in ("ret", "jmp")
    intents: list[Intent] = [Skip()]
    if build.arch == "aarch64":
        intents.append(SetReg("w0", 0))
    for intent in intents:
        with pytest.raises(
            UnsafeCut, match=r"the last instruction of bump; replacing it would run"
        ):
            build.plan("bump", last.address, intent)
    assert build.plan("bump", last.address, Identity()).new == last.data


def test_arm64_kernel_entry_with_ftrace_site() -> None:
    """bti c; mov x9, x30; nop (ftrace's patch site); paciasp: a return cut goes after all four."""
    words = [0xD503245F, 0xAA1E03E9, aarch64.NOP, aarch64.PACIASP, 0xA9BF7BFD]
    words += [0x91000421, 0xA8C17BFD, aarch64.AUTIASP, aarch64.RET]
    code = b"".join(aarch64.word(w) for w in words)
    texts = [i.text for i in disasm(code, "arm64")]
    assert texts[:5] == ["bti c", "mov x9, x30", "nop", "paciasp", "stp x29, x30, [sp, #-0x10]!"]
    base = 0xFFFF800010000000

    def plan(offset: int, intent: Intent) -> Cut:
        return plan_cut("arm64", code, base, base + offset, intent, target="t", location="f")

    cut = plan(0, Return(1))
    assert cut.location == "f+0x10" and cut.instructions == 3
    assert [i.text for i in disasm(cut.new, "arm64")] == ["mov x0, #1", "autiasp", "ret"]
    for offset, owner in ((4, "mov x9, x30"), (8, "nop"), (12, "paciasp")):
        with pytest.raises(
            UnsafeCut, match=rf"^f\+{offset:#x} is '{owner}', which the entry needs"
        ):
            plan(offset, Skip())
    assert plan(16, Skip()).new == aarch64.word(aarch64.NOP)


def test_skip_indirect_calls_x86() -> None:
    code = bytes.fromhex("ffd0ff1500000000c3")  # call rax; call [rip]; ret

    def plan(offset: int, value: int | None) -> Cut:
        return plan_cut(
            "x86_64", code, 0x1000, 0x1000 + offset, SkipCall(value), target="t", location="f"
        )

    assert plan(0, None).new == bytes.fromhex("31c0")
    assert plan(2, 7).new == bytes.fromhex("b807000000") + x86_64.nops(1)
    assert [i.text for i in disasm(plan(2, -1).new, "x86_64")] == [
        "push -1",
        "pop rax",
        "nop dword ptr [rax]",
    ]
    with pytest.raises(
        BadInput, match=r"^mov eax, 0x5 needs 5 bytes but the instruction at f has 2; only 0 fits"
    ):
        plan(0, 5)
    with pytest.raises(BadInput, match=r"has 6; use a value in -128\.\.0xffffffff$"):
        plan(2, 0x123456789)


# --- return-at, force-branch, the flags, one-word targets (the search's intents) --------------

# push rbx; mov rbx, rdi; test rbx, rbx; je 0xe; mov rax, [rbx]; pop rbx; ret;
# xor eax, eax; pop rbx; ret
EARLY = bytes.fromhex("534889fb4885db7405488b035bc331c05bc3")
# stp x29, x30, [sp, #-16]!; cbz x0, 0x10; ldr x0, [x0]; ldp x29, x30, [sp], #16; ret
A64_EARLY = b"".join(
    aarch64.word(w) for w in (0xA9BF7BFD, 0xB4000060, 0xF9400000, 0xA8C17BFD, aarch64.RET)
)


def _plan_early(address: int, intent: Intent, style: CodeStyle | None = None) -> Cut:
    return plan_cut("x86_64", EARLY, 0, address, intent, target="t", location="f", style=style)


def _texts(cut: Cut, arch: str = "x86_64") -> list[str]:
    return [i.text for i in disasm(cut.new, arch, cut.address)]


def test_return_at_jumps_to_the_epilogue() -> None:
    cut = _plan_early(4, ReturnAt(0, 0xC))
    assert _texts(cut) == ["xor eax, eax", "jmp 0xc", "nop"] and cut.end == 9
    assert _texts(_plan_early(4, ReturnAt(None, 0x10)))[0] == "jmp 0x10"  # void: rax kept
    assert _texts(_plan_early(4, ReturnAt(0, 0x10, pop=8)))[:3] == [
        "xor eax, eax",
        "add rsp, 8",
        "jmp 0x10",
    ]
    replayed = _plan_early(4, ReturnAt(0, 0xD, replay=(0xC,)))  # pop rbx copied, then ret
    assert _texts(replayed)[:3] == ["xor eax, eax", "pop rbx", "jmp 0xd"]
    assert describe_intent(ReturnAt(0, 0xC)) == "--return-at 0"


def test_return_at_refusals_say_why() -> None:
    with pytest.raises(BadInput, match=r"--return-at at f\+0x4 needs the epilogue"):
        _plan_early(4, ReturnAt(0))
    with pytest.raises(BadInput, match=r"f\+0x4 \('test rbx, rbx'\) does not start an epilogue"):
        _plan_early(4, ReturnAt(0, 4))
    with pytest.raises(UnsafeCut, match=r"the epilogue at f\+0xc lies inside the cut f\+0x9"):
        _plan_early(9, ReturnAt(0, 0xC))
    with pytest.raises(BadInput, match=r"f\+0x9 \('mov rax, qword ptr \[rbx\]'\) is not a restore"):
        _plan_early(4, ReturnAt(0, 0xD, replay=(9,)))
    with pytest.raises(BadInput, match=r"f\+0xf is inside the 2-byte instruction at f\+0xe"):
        _plan_early(4, ReturnAt(0, 0xF))


def test_return_at_in_a_jump_stub_is_re_aimed() -> None:
    cut = _plan_early(4, ReturnAt(0, 0xC), STUB)
    assert cut.size >= 5 and _texts(cut)[:2] == ["xor eax, eax", "jmp 0xc"]
    stub = disasm(stub_code(cut, 0x7000), "x86_64", 0x7000)
    assert [i.text for i in stub[:2]] == ["xor eax, eax", "jmp 0xc"]
    assert stub[-1].text == f"jmp {cut.end:#x}"


def test_force_branch_either_way() -> None:
    taken, never = _plan_early(7, ForceBranch(True)), _plan_early(7, ForceBranch(False))
    assert _texts(taken) == ["jmp 0xe"] and taken.size == 2
    assert _texts(never) == ["nop"] and never.size == 2
    assert describe_intent(ForceBranch(True)) == "--force-branch taken"
    stubbed = _plan_early(7, ForceBranch(True), STUB)
    assert stubbed.size >= 5 and _texts(stubbed)[0] == "jmp 0xe"
    assert disasm(stub_code(stubbed, 0x9000), "x86_64", 0x9000)[0].text == "jmp 0xe"
    near = bytes.fromhex("0f8400010000") + x86_64.nops(0x100) + b"\xc3"  # je rel32
    cut = plan_cut("x86_64", near, 0, 0, ForceBranch(True), target="t", location="g")
    assert _texts(cut) == ["jmp 0x106", "nop"]
    with pytest.raises(BadInput, match=r"'test rbx, rbx', not a conditional branch"):
        _plan_early(4, ForceBranch(True))
    b = plan_cut("arm64", A64_EARLY, 0, 4, ForceBranch(True), target="t", location="f")
    assert _texts(b, "arm64") == ["b #0x10"]
    nop = plan_cut("arm64", A64_EARLY, 0, 4, ForceBranch(False), target="t", location="f")
    assert _texts(nop, "arm64") == ["nop"]


def test_set_zero_takes_xor_only_where_the_flags_are_dead() -> None:
    # mov rax, [rdi]; test rax, rax; je +1; ret; ret: the test rewrites the flags
    dead = bytes.fromhex("488b074885c07401c3c3")
    cut = plan_cut("x86_64", dead, 0, 0, SetReg("rax", 0), target="t", location="f")
    assert _texts(cut) == ["xor eax, eax", "nop"]
    # test rdi, rdi; mov rax, [rdi]; je +1: the je reads the test's flags across the load
    live = bytes.fromhex("4885ff488b077401c3c3")
    with pytest.raises(BadInput, match=r"would clobber the flags 'je 9' at f\+0x6 may read"):
        plan_cut("x86_64", live, 0, 3, SetReg("rax", 0), target="t", location="f")
    with pytest.raises(BadInput, match="needs 5 bytes but the instruction at f has 3"):
        plan_cut("x86_64", dead, 0, 0, SetReg("rax", 1), target="t", location="f")


def test_one_word_targets_refuse_longer_cuts() -> None:
    one = CodeStyle(ftrace_entry=True, max_len=4)

    def plan(address: int, intent: Intent) -> Cut:
        return plan_cut("arm64", A64_EARLY, 0, address, intent, target="t", location="f", style=one)

    with pytest.raises(UnsafeCut, match=r"covers 8 bytes \(2 instructions\) but this target"):
        plan(4, ReturnAt(0, 0xC))
    # a return is two words here: the refusal names the one-word ways to return early
    with pytest.raises(
        UnsafeCut, match=r"^a return at f is 2 instructions \('mov x0, #0; ret'"
    ) as exc:
        plan(0, Return(0))
    assert "one 4-byte instruction per cut" in str(exc.value)
    assert "--skip-call VALUE" in str(exc.value) and "\n" not in str(exc.value)
    assert _texts(plan(4, ReturnAt(None, 0xC)), "arm64") == ["b #0xc"]
    assert plan(8, SetReg("x0", 0)).size == 4
    arm64_kernel = get_arch("arm64").kernel_code_style(lambda n: None, lambda a: None, _no_text)
    assert arm64_kernel.max_len == 4


def _no_text(address: int, size: int) -> bytes:
    raise NotFound("no kernel text here")


def test_a_call_nothing_returns_from_is_not_skipped() -> None:
    code = bytes.fromhex("31c0e800000000cccc")  # xor; call (noreturn); int3 padding
    with pytest.raises(UnsafeCut, match=r"'call 7' at f\+0x2 never returns"):
        plan_cut("x86_64", code, 0, 2, SkipCall(), target="t", location="f")


def test_plan_cuts_is_plan_cut_for_each() -> None:
    requests: list[tuple[int, Intent]] = [(4, ReturnAt(0, 0xC)), (7, ForceBranch(True))]
    requests.append((5, Skip()))
    out = plan_cuts("x86_64", EARLY, 0, requests, target="t", location="f")
    assert out[0] == _plan_early(4, ReturnAt(0, 0xC))
    assert out[1] == _plan_early(7, ForceBranch(True))
    assert isinstance(out[2], BadInput) and "inside the 3-byte instruction" in str(out[2])


# --- the x86_64 jump to a stub: nothing may land inside its 5 bytes -------------------------

# push rbx; call rax; nop4; nop4; pop rbx; ret (a call at the entry would be ftrace's)
SHORT_CALL = bytes.fromhex("53 ffd0 0f1f4000 0f1f4000 5b c3")
# push rbx; call rel32 (to the nop4 after it); nop4; pop rbx; ret
LONG_CALL = bytes.fromhex("53 e800000000 0f1f4000 5b c3")
# mov eax, 1; ret
MOV5 = bytes.fromhex("b801000000c3")


def _stub_plan(code: bytes, address: int, intent: Intent, style: CodeStyle = STUB) -> Cut:
    return plan_cut(
        "x86_64", code, 0x1000, 0x1000 + address, intent, target="t", location="f", style=style
    )


def test_stub_refuses_a_call_that_returns_inside_the_jump() -> None:
    """``call *%rax`` + NOPs (a retpoline call the kernel rewrote), cut with a jump to a stub.

    A task asleep in the callee returns to f+0x2, which the 5-byte jump covers.
    """
    plain = CodeStyle(ftrace_entry=True)
    for address, intent in ((1, SkipCall()), (0, Return(42))):
        assert _stub_plan(SHORT_CALL, address, intent, plain).address == 0x1000 + address
        with pytest.raises(UnsafeCut) as exc:
            _stub_plan(SHORT_CALL, address, intent)
        message = str(exc.value)
        assert message.startswith("'call rax' at f+0x1 returns to f+0x3, inside the 5-byte jump"), (
            message
        )
        assert "cut a call of 5 bytes or more" in message and "\n" not in message
    # a 5-byte call returns to the end of the jump: the original bytes there, fine
    cut = _stub_plan(LONG_CALL, 1, SkipCall())
    assert cut.size == 5 and cut.new == bytes.fromhex("31c0") + x86_64.nops(3)
    assert _stub_plan(LONG_CALL, 0, Return(42)).size == 6  # push rbx + the call: dead after


def test_stub_refuses_a_branch_aimed_inside_the_range() -> None:
    """NEW's rel32 branches may leave the range or go to its ends, never into its middle."""
    for target in (2, 4):
        into = bytes.fromhex("e9") + (target - 5).to_bytes(4, "little", signed=True)
        _stub_plan(MOV5, 0, RawBytes(into), CodeStyle())  # in place: a jmp there is fine
        with pytest.raises(
            UnsafeCut,
            match=rf"holds 'jmp 0x100{target}', aimed at f\+0x{target}, "
            r"inside the range f\.\.f\+0x5 it replaces",
        ):
            _stub_plan(MOV5, 0, RawBytes(into))
    for target in (5, 0x20, -0x10):  # the range's end, or outside it: re-aimed from the stub
        out = bytes.fromhex("e9") + (target - 5).to_bytes(4, "little", signed=True)
        assert _stub_plan(MOV5, 0, RawBytes(out)).new == out
