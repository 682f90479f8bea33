"""Candidate cut points, checked against ground truth read independently of knockout.

Builds of tests/unit/test_unwind.py's functions (gcc -O2 without frame
pointers, x86_64 and aarch64, with and without pointer authentication), a
kernel-like x86_64 build (endbr64, ftrace's nop, return thunks) planned as
the kernel module writes cuts (a jump to a stub), and Debian's debug
vmlinux.  For every "return at P" point the planner accepted:

* the cut's code decodes to: the return value, the stack freed, the
  epilogue's restores replayed, one jump to the landing point;
* ``readelf --debug-dump=frames-interp`` gives P the stack state of the
  epilogue's entry (the first replayed restore, else the landing), up to
  the stack the cut frees;
* the instructions from the landing to the return are restores only
  (matched here by their own patterns), and they, with the replayed ones,
  restore exactly the registers readelf says P has saved;
* on the vmlinux, the ORC table parsed by tests/unit/test_unwind.py says the same.

Points refused for their stack state are checked the other way: readelf
gives no epilogue entry that state.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from knockout.arch import Arch, CodeStyle, get_arch
from knockout.asm import disasm
from knockout.cuts import ForceBranch, Return, ReturnAt, SetReg, SkipCall
from knockout.elf import open_elf
from knockout.errors import BadInput
from knockout.insn import Insn
from knockout.plan import plan_cut
from knockout.plans import Point, parse_plan, parse_points
from knockout.search import Candidate, ElfCode, candidates, plan_point, plan_points, return_points
from knockout.symbols import elf_symbols
from tests.unit.test_unwind import (
    BUILDS,
    FUNCTIONS,
    KERNEL_FUNCTIONS,
    Build,
    Row,
    build_shapes,
    independent_orc,
    readelf_frames,
    readelf_row_at,
    vmlinux,
)

__all__ = ["vmlinux"]  # the fixture, re-used from test_unwind


@pytest.fixture(scope="module", params=list(BUILDS))
def shapes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Build:
    return build_shapes(request.param, tmp_path_factory.mktemp(request.param))


# -- ground truth of our own --------------------------------------------------------------

#: epilogue instructions, by pattern: (regex on "mnemonic op_str", registers it restores)
_X86_RESTORE = re.compile(
    r"^(pop (?P<pop>rbx|rbp|r1[2-5])|add rsp, (0x[0-9a-f]+|\d+)|lea rsp, \[r[sb]p[^\]]*\]"
    r"|(?P<leave>leave)|nop.*)$"
)
_A64_RESTORE = re.compile(
    r"^(ldp (?P<a>[xd]\d+), (?P<b>[xd]\d+), \[sp.*|ldr (?P<c>[xd]\d+), \[sp.*|add sp, sp, #\w+"
    r"|mov sp, x29|autiasp|autibsp|nop)$"
)


def restored_by(insn: Insn, arch: Arch) -> set[str] | None:
    """The registers an epilogue instruction restores, or None if it is not one (our patterns)."""
    text = insn.text
    if arch.name == "x86_64":
        m = _X86_RESTORE.match(text)
        if m is None:
            return None
        return {m["pop"]} if m["pop"] else {"rbp"} if m["leave"] else set()
    m = _A64_RESTORE.match(text)
    if m is None:
        return None
    found = {r for r in (m["a"], m["b"], m["c"]) if r}
    return {"x29" if r == "fp" else "x30" if r == "lr" else r for r in found}


def is_return(insn: Insn, thunk: int | None) -> bool:
    return insn.mnemonic in ("ret", "retaa", "retab") or (
        thunk is not None and insn.text == f"jmp {thunk:#x}"
    )


def _cfa(row: Row) -> tuple[str, int]:
    m = re.fullmatch(r"(\w+)([+-]\d+)", row.cfa)
    assert m, row
    return m[1], int(m[2])


def _saved(row: Row, arch: Arch) -> set[str]:
    """Registers readelf says are saved (the return address column aside on x86)."""
    names = set(row.rules) - ({"ra"} if arch.name == "x86_64" else set())
    return {"x30" if n == "ra" else n for n in names}


@dataclass(frozen=True)
class Function:
    """A function of a build: its instructions and readelf's rows."""

    insns: list[Insn]
    rows: list[tuple[int, Row]]

    def at(self, address: int) -> int:
        return next(k for k, i in enumerate(self.insns) if i.address == address)


def function(path: Path, readelf: str, name: str, arch: Arch) -> Function:
    symbol = elf_symbols(str(path)).lookup(name)
    insns = disasm(open_elf(str(path)).read(symbol.address, symbol.size), arch, symbol.address)
    start = max(s for s in readelf_frames(readelf, path) if s <= symbol.address)
    return Function(insns, readelf_frames(readelf, path)[start][1])


def decoded_cut(c: Candidate, arch: Arch) -> list[Insn]:
    assert c.cut is not None
    return [i for i in disasm(c.cut.new, arch, c.cut.address) if not i.mnemonic.startswith("nop")]


def check_return_point(
    c: Candidate, fn: Function, arch: Arch, thunk: int | None = None
) -> tuple[int, int]:
    """One planned "return at P" against readelf and our epilogue patterns; (landing, entry)."""
    intent = c.intent
    assert isinstance(intent, ReturnAt) and intent.epilogue is not None and c.cut is not None
    code = decoded_cut(c, arch)
    jump = code[-1]
    assert jump.mnemonic in ("jmp", "b") and jump.op_str.lstrip("#") == f"{intent.epilogue:#x}"
    replayed = [fn.insns[fn.at(a)] for a in intent.replay]
    body = code[:-1]
    assert [i.data for i in body[len(body) - len(replayed) :]] == [r.data for r in replayed]
    entry = intent.replay[0] if intent.replay else intent.epilogue
    p_row = readelf_row_at(fn.rows, c.address)
    e_row = readelf_row_at(fn.rows, entry)
    (p_reg, p_off), (e_reg, e_off) = _cfa(p_row), _cfa(e_row)
    assert p_row.rules == e_row.rules and p_reg == e_reg, (c.location, p_row, e_row)
    assert p_off - e_off == intent.pop, (c.location, p_row, e_row)
    restored: set[str] = set()
    for insn in replayed:
        regs = restored_by(insn, arch)
        assert regs is not None, insn
        restored |= regs
    for insn in fn.insns[fn.at(intent.epilogue) :]:
        if is_return(insn, thunk):
            break
        regs = restored_by(insn, arch)
        assert regs is not None, f"{c.location}: '{insn.text}' in the epilogue"
        restored |= regs
    assert restored == _saved(p_row, arch), (c.location, restored, p_row)
    return intent.epilogue, entry


def epilogue_entries(fn: Function, arch: Arch, thunk: int | None = None) -> Iterator[int]:
    """Every instruction from which only restores (and return-value writes) lead to a return."""
    for k, insn in enumerate(fn.insns):
        if not is_return(insn, thunk):
            continue
        yield insn.address
        j = k - 1
        while j >= 0 and (
            restored_by(fn.insns[j], arch) is not None or _sets_return(fn.insns[j], arch)
        ):
            yield fn.insns[j].address
            j -= 1


def _sets_return(insn: Insn, arch: Arch) -> bool:
    first = insn.op_str.split(",")[0].strip()
    if arch.name == "x86_64":
        return first in ("rax", "eax") and not insn.mnemonic.startswith(("j", "call", "push"))
    return first in ("x0", "w0") and not insn.mnemonic.startswith(("b", "st", "cb", "tb"))


# -- the tests ----------------------------------------------------------------------------


def test_return_points_match_the_unwind_tables(shapes: Build) -> None:
    arch = shapes.arch
    code = ElfCode(str(shapes.path))
    planned = refused = 0
    for name in FUNCTIONS:
        fn = function(shapes.path, shapes.readelf, name, arch)
        entries = list(epilogue_entries(fn, arch))
        for c in return_points(code, name):
            if c.kind == "entry":
                continue
            assert c.kind == "return-at" and c.text and "\n" not in (c.refused or "")
            if c.planned:
                check_return_point(c, fn, arch)
                planned += 1
            elif c.refused and c.refused.startswith("no epilogue"):
                p_row = readelf_row_at(fn.rows, c.address)
                for entry in entries:  # no epilogue entry has P's state, even up to freed stack
                    e_row = readelf_row_at(fn.rows, entry)
                    (p_reg, p_off), (e_reg, e_off) = _cfa(p_row), _cfa(e_row)
                    freed = p_reg == arch.stack_register() and p_off > e_off
                    same = e_row.rules == p_row.rules and p_reg == e_reg
                    assert not (same and (p_off == e_off or freed)), (c.location, entry)
                refused += 1
    assert planned > 60, planned
    assert refused > 0  # prologue points (x86) or saves between stp's (aarch64)


def test_the_epilogue_that_restores_less_than_its_state_says_is_refused(tmp_path: Path) -> None:
    """gcc's aarch64 tables keep x21 "saved" after the epilogue reloaded it: a jump past that
    reload would return with x21 clobbered; the point replays the reload instead."""
    build = build_shapes("aarch64", tmp_path)
    arch = build.arch
    fn = function(build.path, build.readelf, "saver", arch)
    points = [c for c in return_points(ElfCode(str(build.path)), "saver") if c.planned]
    replaying = [c for c in points if isinstance(c.intent, ReturnAt) and c.intent.replay]
    assert replaying, "saver's epilogue sets x0 between its restores: some points replay them"
    for c in replaying:
        landing, entry = check_return_point(c, fn, arch)
        assert entry < landing
        skipped = fn.insns[fn.at(entry) : fn.at(landing)]
        assert any(_sets_return(i, arch) for i in skipped)  # the value the epilogue would set
    # asked for that landing, the point still replays: without, x21 would come back clobbered
    c = replaying[0]
    assert isinstance(c.intent, ReturnAt) and c.intent.epilogue is not None
    again = plan_point(ElfCode(str(build.path)), c.location, ReturnAt(0, c.intent.epilogue))
    assert again.planned and isinstance(again.intent, ReturnAt)
    assert again.intent.replay == c.intent.replay


def test_a_wrong_landing_is_refused(shapes: Build) -> None:
    """A landing with another stack state, or no epilogue at all, is never planned."""
    code = ElfCode(str(shapes.path))
    arch = shapes.arch
    fn = function(shapes.path, shapes.readelf, "saver", arch)
    points = [c for c in return_points(code, "saver") if c.planned and c.kind == "return-at"]
    body = next(c for c in points if readelf_row_at(fn.rows, c.address).rules.keys() - {"ra"})
    p_row = readelf_row_at(fn.rows, body.address)
    rets = [i for i in fn.insns if arch.is_return(i)]
    other = next(i for i in rets if readelf_row_at(fn.rows, i.address) != p_row)
    wrong = plan_point(code, body.location, ReturnAt(0, other.address))
    assert not wrong.planned and wrong.refused is not None
    assert "is not that of" in wrong.refused or "does not restore" in wrong.refused
    symbol = elf_symbols(str(shapes.path)).lookup("saver")
    with pytest.raises(BadInput, match="does not start an epilogue"):
        plan_cut(
            arch,
            code.read(symbol.address, symbol.size),
            symbol.address,
            body.address,
            ReturnAt(0, fn.insns[len(fn.insns) // 3].address),
            target="t",
            location="saver",
        )


def test_return_values_come_from_dwarf(shapes: Build) -> None:
    code = ElfCode(str(shapes.path))
    arch = shapes.arch

    def first_planned(name: str, **kw: object) -> Candidate:
        found = [c for c in return_points(code, name, **kw) if c.planned and c.kind == "return-at"]  # type: ignore[arg-type]
        assert found, name
        return found[0]

    pointer = first_planned("find")
    assert isinstance(pointer.intent, ReturnAt) and pointer.intent.value == 0
    void = first_planned("voidy")
    assert isinstance(void.intent, ReturnAt) and void.intent.value is None
    assert decoded_cut(void, arch)[0].mnemonic in ("jmp", "b", "add", "pop", "ldp", "ldr")
    forced = first_planned("saver", return_value=77)
    assert isinstance(forced.intent, ReturnAt) and forced.intent.value == 77
    assert "0x4d" in decoded_cut(forced, arch)[0].op_str
    entry = return_points(code, "find")[0]
    assert entry.kind == "entry" and isinstance(entry.intent, Return) and entry.intent.value == 0
    assert "(s *)" not in entry.text and "struct node *" in entry.text


def test_every_kind_plans_or_says_why(shapes: Build) -> None:
    """Branches, loads and calls: each planned cut does what its kind says."""
    arch = shapes.arch
    code = ElfCode(str(shapes.path))
    kinds: dict[str, int] = {}
    for name in FUNCTIONS:
        found = candidates(code, name)
        assert [c.address for c in found] == sorted(c.address for c in found)
        for c in found:
            kinds[c.kind] = kinds.get(c.kind, 0) + c.planned
            if not c.planned:
                assert c.refused and "\n" not in c.refused
                continue
            assert c.cut is not None
            original = disasm(c.cut.old, arch, c.cut.address)[0]
            new = decoded_cut(c, arch)
            if c.kind == "branch-taken":
                assert isinstance(c.intent, ForceBranch) and c.intent.taken
                target = arch.branch_target(original)
                assert new[0].mnemonic in ("jmp", "b") and arch.branch_target(new[0]) == target
            elif c.kind == "branch-not-taken":
                assert not new  # all NOPs: falls through
            elif c.kind == "load":
                assert isinstance(c.intent, SetReg) and c.intent.value == 0
                assert c.intent.reg in original.op_str.split(",")[0]
                branch_at = int(c.text.rsplit(" at ", 1)[1].strip(")").split("+")[1], 16)
                assert branch_at > c.address - elf_symbols(str(shapes.path)).lookup(name).address
            elif c.kind == "skip-call":
                assert isinstance(c.intent, SkipCall) and arch.is_call(original)
                assert not any(arch.is_call(i) for i in new)
    for kind in ("entry", "return-at", "branch-taken", "branch-not-taken", "load", "skip-call"):
        assert kinds.get(kind), (kind, kinds)


def test_deny_rules_refuse_points_and_callees(shapes: Build) -> None:
    code = ElfCode(str(shapes.path))
    asked: list[tuple[str, int]] = []

    def refuse(symbol: str, address: int) -> str | None:
        asked.append((symbol, address))
        return "refused: ext is denied" if symbol.startswith("ext") else None

    found = candidates(code, "saver", refuse=refuse)
    calls = [c for c in found if c.kind == "skip-call"]
    assert calls and all(c.refused == "refused: ext is denied" for c in calls)
    assert all(c.planned for c in found if c.kind == "branch-taken" and "jmp" not in c.text)
    assert {s for s, _ in asked} >= {"saver"}
    everything = candidates(code, "saver", refuse=lambda s, a: "no" if s == "saver" else None)
    assert everything and all(c.cut is None and c.refused for c in everything)
    alone = candidates(code, "saver")
    assert all(c.refused == "no" for c, a in zip(everything, alone, strict=True) if a.planned)


def test_arm64_kernel_cuts_are_one_word(tmp_path: Path) -> None:
    """arm64's module writes one word: return-at only as a lone b (void), the rest refused."""
    build = build_shapes("aarch64", tmp_path)
    code = ElfCode(str(build.path), CodeStyle(ftrace_entry=True, max_len=4))
    for name in FUNCTIONS:
        for c in candidates(code, name):
            if c.planned:
                assert c.cut is not None and c.cut.size == 4, c
                if isinstance(c.intent, ReturnAt):
                    assert name == "voidy" and c.intent.value is None
                    assert not c.intent.replay and not c.intent.pop
            elif c.kind in ("return-at", "entry") and name != "voidy":
                assert c.refused is not None
    voidy = [c for c in return_points(code, "voidy") if c.planned]
    assert voidy and voidy[0].kind == "entry" and isinstance(voidy[0].intent, ReturnAt)
    assert decoded_cut(voidy[0], build.arch)[0].mnemonic == "b"
    saver = return_points(code, "saver")
    assert not any(c.planned for c in saver)
    assert any("at most 4 bytes per cut" in (c.refused or "") for c in saver)


KERNEL_LIKE = "-fcf-protection=full -pg -mfentry -mnop-mcount -mfunction-return=thunk-extern"
THUNK = '__asm__(".globl __x86_return_thunk\\n__x86_return_thunk: ret; int3\\n");\n'


def test_kernel_like_code_with_jump_stubs(tmp_path: Path) -> None:
    """endbr64 + ftrace's nop + returns through a thunk, planned as the kernel module writes."""
    if shutil.which("gcc") is None or get_arch("x86_64") is None:
        pytest.skip("gcc not installed")
    from tests.unit.test_unwind import SHAPES

    source = tmp_path / "k.c"
    source.write_text(THUNK + SHAPES)
    out = tmp_path / "k.elf"
    flags = ["-O2", "-g", "-w", "-fno-pic", "-no-pie", "-static", "-nostdlib", "-Wl,-e,saver"]
    flags.append("-Wl,--unresolved-symbols=ignore-all")  # ext() and sink() are never run
    subprocess.run(["gcc", *flags, *KERNEL_LIKE.split(), "-o", str(out), str(source)], check=True)
    thunk = elf_symbols(str(out)).lookup("__x86_return_thunk").address
    style = CodeStyle(jump_stub=True, ftrace_entry=True, return_thunk=thunk)
    code = ElfCode(str(out), style)
    arch = get_arch("x86_64")
    planned = 0
    for name in ("saver", "framed", "shrink", "find", "voidy"):
        fn = function(out, "readelf", name, arch)
        for c in return_points(code, name):
            if c.kind == "return-at" and c.planned:
                check_return_point(c, fn, arch, thunk)
                assert c.cut is not None and c.cut.size >= 5  # the jump to the stub fits
                planned += 1
    assert planned > 20


def test_user_points_and_plan_files(shapes: Build) -> None:
    code = ElfCode(str(shapes.path))
    points = return_points(code, "saver")
    body = next(c for c in points if c.planned and c.kind == "return-at" and "+" in c.location)
    offset = body.location.split("+")[1]
    listed = parse_points(f"saver+{offset}, saver --return 5, saver+{offset} --return-at 9")
    found = plan_points(code, listed)
    assert found[0].cut == body.cut and found[0].kind == "return-at"
    assert found[1].kind == "entry" and isinstance(found[1].intent, Return)
    assert isinstance(found[2].intent, ReturnAt) and found[2].intent.value == 9
    plan = parse_plan(
        f'[[cut]]\nname = "here"\nspec = "saver+{offset}"\n'
        '[[cut]]\nname = "not a call"\nspec = "saver"\nintent = "--skip-call"\n'
    )
    named = plan_points(code, plan)
    assert [c.name for c in named] == ["here", "not a call"]
    assert named[0].planned and not named[1].planned and "not a call" in (named[1].refused or "")
    inside = plan_points(code, [Point(f"saver+{int(offset, 16) + 1:#x}")])[0]
    assert not inside.planned and inside.refused


def test_vmlinux_return_points_agree_with_orc(vmlinux: Path) -> None:
    """Debian's kernel as its module writes cuts: each point's ORC entry equals its landing's."""
    thunk = elf_symbols(str(vmlinux)).lookup("__x86_return_thunk").address
    style = CodeStyle(jump_stub=True, ftrace_entry=True, return_thunk=thunk)
    arch = get_arch("x86_64")
    orc = independent_orc(vmlinux)
    for unwind in (("cfi", "orc"), ("orc",)):
        planned = 0
        for name in KERNEL_FUNCTIONS:
            fn = function(vmlinux, "readelf", name, arch)
            for c in return_points(ElfCode(str(vmlinux), style), name, unwind=unwind):
                if c.kind != "return-at" or not c.planned:
                    continue
                _landing, entry = check_return_point(c, fn, arch, thunk)
                assert isinstance(c.intent, ReturnAt)
                p_sp, p_bp, p_regs, p_bits = orc.at(c.address)
                e_sp, e_bp, e_regs, e_bits = orc.at(entry)
                assert (p_bp, p_regs, p_bits) == (e_bp, e_regs, e_bits) and p_regs & 0xF == 5
                assert p_sp - e_sp == c.intent.pop
                planned += 1
        assert planned > 100, (unwind, planned)


GUARDED = r"""
extern long ext(long);
extern void lock(void);
extern void unlock(void);

__attribute__((noinline)) long guarded(long *p, int n)
{
	long s = ext(p[0]);
	lock();
	for (int i = 0; i < n; i++)
		s += p[i] * (i + 1);
	unlock();
	return s + ext(s);
}
"""


@pytest.mark.parametrize("build", ["x86_64", "aarch64"])
def test_no_return_between_a_denied_lock_and_its_release(build: str, tmp_path: Path) -> None:
    """With a deny rule for lock/unlock, no point between the two returns; points outside do."""
    shapes = build_shapes(build, tmp_path, GUARDED)
    code = ElfCode(str(shapes.path))
    arch = shapes.arch
    symbol = elf_symbols(str(shapes.path)).lookup("guarded")
    insns = disasm(code.read(symbol.address, symbol.size), arch, symbol.address)
    table = elf_symbols(str(shapes.path))

    def calls_to(name: str) -> list[int]:
        found = []
        for i in insns:
            target = arch.branch_target(i) if arch.is_call(i) else None
            where = table.symbolize(target) if target is not None else None
            if (
                where is not None
                and where.symbol is not None
                and where.symbol.name.startswith(name)
            ):
                found.append(i.address)
        return found

    (locked,), (unlocked,) = calls_to("lock"), calls_to("unlock")

    def refuse(name: str, address: int) -> str | None:
        return "refused: a lock" if name.startswith(("lock", "unlock")) else None

    points = [c for c in return_points(code, "guarded", refuse=refuse) if c.kind == "return-at"]
    inside = [c for c in points if locked < c.address <= unlocked]
    assert inside and not any(c.planned for c in inside)
    assert all("skips the call of unlock" in (c.refused or "") for c in inside)
    outside = [c for c in points if c.planned]
    assert outside and all(c.address <= locked or c.address > unlocked for c in outside)
    assert any(c.address > unlocked for c in outside) and any(c.address <= locked for c in outside)
    unguarded = [c for c in return_points(code, "guarded") if c.kind == "return-at" and c.planned]
    assert any(locked < c.address <= unlocked for c in unguarded)  # the rule made the difference
