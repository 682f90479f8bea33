"""Call-frame information read by knockout.unwind, checked against binutils and the kernel's ORC.

Functions of many shapes (leaf, shrink-wrapped, a large frame, a VLA with a
frame pointer, pointer chasing, a jump table) are built here with gcc -O2
without frame pointers, for x86_64 and aarch64 (plain and with pointer
authentication); every FDE's rows must equal what ``readelf
--debug-dump=frames-interp`` prints, and aarch64's return-address signing
state what the raw ``--debug-dump=frames`` program says.  On Debian's debug
vmlinux (``make debug-vmlinux``) the ``.debug_frame`` rows are compared the
same way, and the ORC table, parsed here on its own, must agree with
knockout's and with the stack depth the disassembly's pushes and pops give.

The builds and the readelf parser are shared with tests/unit/test_candidates.py.
"""

from __future__ import annotations

import bisect
import functools
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from knockout.arch import Arch, get_arch
from knockout.asm import disasm
from knockout.dwarf import debug_vmlinux
from knockout.elf import open_elf
from knockout.symbols import elf_symbols
from knockout.unwind import FrameState, call_frames, fde_rows, orc_table, stack_gap, stack_states

SHAPES = r"""
typedef unsigned long u64;
struct node { struct node *next; long value; int flags; };
extern long ext(long);
extern void sink(long *, int);

__attribute__((noinline)) long leafy(long x) { return x * 3 + 1; }

__attribute__((noinline)) long saver(long *p, int n, long k)
{
	long s = 0, t = 1, u = 7;
	for (int i = 0; i < n; i++) {
		if (p[i] > k)
			s += ext(p[i]) * t;
		else
			t = ext(t + s) ^ u;
		u += s >> 3;
		if (s > 1000000)
			return -1;
	}
	return s + t + u;
}

__attribute__((noinline)) long framed(int n)
{
	long buf[64];
	for (int i = 0; i < 64; i++)
		buf[i] = i * n;
	sink(buf, 64);
	return buf[n & 63] + ext(buf[3]);
}

__attribute__((noinline)) long shrink(int k, long *p)
{
	if (k <= 0)
		return 0;
	long a = ext(p[0]), b = ext(p[1]);
	return a * b + k;
}

__attribute__((noinline)) long vla(int n)
{
	long buf[n + 1];
	for (int i = 0; i <= n; i++)
		buf[i] = ext(i);
	sink(buf, n);
	return buf[n];
}

__attribute__((noinline)) void voidy(long *p, int n)
{
	for (int i = 0; i < n; i++) {
		if (p[i] & 1)
			p[i] = ext(p[i]);
		else
			p[i] += 3;
	}
}

__attribute__((noinline)) struct node *find(struct node *n, long v)
{
	while (n) {
		if (!n->next)
			return 0;
		if (n->value == v && (n->flags & 4))
			return n;
		n = n->next;
	}
	return 0;
}

__attribute__((noinline)) int pick(int k, int a)
{
	switch (k) {
	case 0: return a + 1; case 1: return a * 3; case 2: return a - 7; case 3: return a ^ 5;
	case 4: return a << 2; case 5: return ext(a); case 6: return 99; default: return -1;
	}
}
"""
FUNCTIONS = ("leafy", "saver", "framed", "shrink", "vla", "voidy", "find", "pick")
COMMON = ["-O2", "-g", "-fomit-frame-pointer", "-fPIC", "-shared", "-nostdlib", "-w"]
BUILDS = {
    "x86_64": ("gcc", "readelf", COMMON),
    "aarch64": ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-readelf", COMMON),
    "aarch64-pac": (
        "aarch64-linux-gnu-gcc",
        "aarch64-linux-gnu-readelf",
        [*COMMON, "-mbranch-protection=standard"],
    ),
}


@dataclass(frozen=True)
class Build:
    """One build of :data:`SHAPES`."""

    name: str
    path: Path
    readelf: str

    @property
    def arch(self) -> Arch:
        return open_elf(str(self.path)).arch


def build_shapes(name: str, directory: Path, source: str = SHAPES) -> Build:
    """Compile ``source`` as build ``name`` (skips where the cross compiler is missing)."""
    compiler, readelf, flags = BUILDS[name]
    if shutil.which(compiler) is None or shutil.which(readelf) is None:
        pytest.skip(f"{compiler} / {readelf} not installed (make setup installs them)")
    c_file = directory / "shapes.c"
    c_file.write_text(source)
    out = directory / f"shapes.{name}.so"
    subprocess.run([compiler, *flags, "-o", str(out), str(c_file)], check=True)
    return Build(name, out, readelf)


@pytest.fixture(scope="module", params=list(BUILDS))
def shapes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Build:
    return build_shapes(request.param, tmp_path_factory.mktemp(request.param))


# -- readelf, parsed here ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of ``readelf --debug-dump=frames-interp``: the CFA and each column's rule."""

    cfa: str
    rules: dict[str, str]


_FDE = re.compile(r"FDE cie=(\w+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")
_CIE = re.compile(r"^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE")


@functools.cache
def readelf_frames(readelf: str, path: Path) -> dict[int, tuple[int, list[tuple[int, Row]]]]:
    """Every FDE binutils decodes: start -> (end, [(address, row)]).

    An FDE without instructions of its own prints no rows: its state is
    its CIE's initial row.
    """
    out = subprocess.run(
        [readelf, "--debug-dump=frames-interp", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    frames: dict[int, tuple[int, list[tuple[int, Row]]]] = {}
    cies: dict[int, list[tuple[int, Row]]] = {}
    fde_cie: dict[int, int] = {}
    columns: list[str] = []
    current: list[tuple[int, Row]] | None = None
    for line in out.splitlines():
        m = _FDE.search(line)
        c = _CIE.match(line)
        if m:
            current = []
            start = int(m[2], 16)
            frames[start] = (int(m[3], 16), current)
            fde_cie[start] = int(m[1], 16)
            columns = []
        elif c:
            current = cies.setdefault(int(c[1], 16), [])
            columns = []
        elif line.strip().startswith("LOC"):
            columns = line.split()[2:]
        elif current is not None and re.match(r"^[0-9a-f]{8,16} ", line):
            fields = line.split()
            rules = {c: v for c, v in zip(columns, fields[2:], strict=False) if v != "u"}
            current.append((int(fields[0], 16), Row(fields[1], rules)))
        elif not line.strip():
            current = None
    for start, (_end, rows) in frames.items():
        initial = cies.get(fde_cie[start], [])
        if not rows and initial:
            rows.append((start, initial[0][1]))
    return frames


def readelf_row_at(rows: list[tuple[int, Row]], address: int) -> Row:
    """The row in effect at ``address`` (the last one at or before it)."""
    chosen = [row for at, row in rows if at <= address]
    assert chosen, f"no readelf row at {address:#x}"
    return chosen[-1]


def spelled(state: FrameState, arch: Arch) -> Row:
    """knockout's state as readelf spells it (``c-16``; aarch64's x30 column is ``ra``)."""
    rules = {}
    return_column = arch.dwarf_register(30) if arch.name == "aarch64" else "ra"
    for reg, rule in state.saved:
        if reg == "ra_sign_state":
            continue  # readelf's interpreted table has no column for it
        name = "ra" if reg == return_column else reg
        if rule.startswith("cfa"):
            rule = rule.replace("cfa", "c", 1)
        elif rule.startswith("expr:"):
            rule = "exp"
        rules[name] = rule
    return Row("exp" if state.cfa_reg is None else state.cfa, rules)


_ADVANCE = re.compile(r"DW_CFA_advance_loc\d?: \d+ to ([0-9a-f]+)")


@functools.cache
def readelf_signed(readelf: str, path: Path) -> dict[int, list[tuple[int, bool]]]:
    """aarch64: FDE start -> [(address, return address signed from there)], from the raw program."""
    out = subprocess.run(
        [readelf, "--debug-dump=frames", str(path)], capture_output=True, text=True, check=True
    ).stdout
    found: dict[int, list[tuple[int, bool]]] = {}
    changes: list[tuple[int, bool]] = []
    signed, at = False, 0
    stack: list[bool] = []
    for line in out.splitlines():
        m = _FDE.search(line)
        if m:
            at, signed, stack = int(m[2], 16), False, []
            changes = [(at, False)]
            found[at] = changes
            continue
        advance = _ADVANCE.search(line)
        if advance:
            at = int(advance[1], 16)
        elif "negate_ra_state" in line or "GNU_window_save" in line:
            signed = not signed
            changes.append((at, signed))
        elif "DW_CFA_remember_state" in line:
            stack.append(signed)
        elif "DW_CFA_restore_state" in line and stack:
            signed = stack.pop()
            changes.append((at, signed))
    return found


# -- .eh_frame of the builds ----------------------------------------------------------------


def test_every_fde_matches_readelf(shapes: Build) -> None:
    """Row by row, every FDE: the CFA and every register's rule as binutils interprets them."""
    frames = call_frames(str(shapes.path), ".eh_frame")
    assert frames is not None and len(frames) >= len(FUNCTIONS)
    theirs = readelf_frames(shapes.readelf, shapes.path)
    arch = shapes.arch
    compared = 0
    for start, (end, rows) in theirs.items():
        fde = frames.fde_at(start)
        assert fde is not None and (fde.start, fde.end) == (start, end)
        ours = fde_rows(fde, arch)
        for address, row in rows:
            state = next(s for a, s in reversed(ours) if a <= address)
            assert spelled(state, arch) == row, f"{shapes.name} at {address:#x}: {state}"
            compared += 1
    assert compared > 25


def test_signing_state_follows_the_raw_program(tmp_path: Path) -> None:
    """aarch64 with PAC: ra_sign_state toggles where DW_CFA_AARCH64_negate_ra_state says."""
    build = build_shapes("aarch64-pac", tmp_path)
    arch = build.arch
    table = elf_symbols(str(build.path))
    raw = readelf_signed(build.readelf, build.path)
    toggled = 0
    for name in FUNCTIONS:
        symbol = table.lookup(name)
        states = stack_states(str(build.path), symbol.address, symbol.end, 0, arch)
        changes = raw[states.start]
        for insn in disasm(
            open_elf(str(build.path)).read(symbol.address, symbol.size), arch, symbol.address
        ):
            state = states.at(insn.address)
            if state is None:
                continue
            expected = [s for a, s in changes if a <= insn.address][-1]
            assert (("ra_sign_state", "signed") in state.saved) == expected, insn
            toggled += expected
    assert toggled > 20  # the build signs: the check saw signed code


def test_a_state_at_every_instruction_of_each_function(shapes: Build) -> None:
    """stack_states covers each function from its symbol's start; the gap is CFA arithmetic."""
    table = elf_symbols(str(shapes.path))
    arch = shapes.arch
    for name in FUNCTIONS:
        symbol = table.lookup(name)
        states = stack_states(str(shapes.path), symbol.address, symbol.end, 0x1000, arch)
        assert states.source == ".eh_frame" and states.complete
        assert states.start == symbol.address + 0x1000
        first = states.at(states.start)
        assert first is not None and first.cfa_offset == (8 if arch.name == "x86_64" else 0)
        assert states.at(states.start - 1) is None and states.at(states.end) is None
        sp = arch.stack_register()
        deeper = [s for _, s in states.rows if s.cfa_reg == sp and s.cfa_offset > first.cfa_offset]
        for state in deeper:
            same = FrameState(state.cfa_reg, first.cfa_offset, state.saved)
            assert stack_gap(state, same, sp) == state.cfa_offset - first.cfa_offset
            assert stack_gap(same, state, sp) is None


# -- the debug vmlinux: .debug_frame and ORC ----------------------------------------------------

KERNEL_FUNCTIONS = ("shrink_slab", "do_shrink_slab", "mem_cgroup_iter", "shrink_lruvec", "xa_load")


@pytest.fixture(scope="module")
def vmlinux() -> Path:
    found = debug_vmlinux(_release())
    if found.path is None:
        pytest.skip(found.reason)
    return found.path


def _release() -> str:
    from knockout.seedcuts import seed_kernel

    try:
        return seed_kernel().name.removeprefix("vmlinuz-")
    except LookupError as exc:
        pytest.skip(str(exc))


def test_vmlinux_debug_frame_matches_readelf(vmlinux: Path) -> None:
    """The kernel's .debug_frame (no relocations applied: the linked file holds final values)."""
    frames = call_frames(str(vmlinux), ".debug_frame")
    assert frames is not None and len(frames) > 10000
    theirs = readelf_frames("readelf", vmlinux)
    arch = get_arch("x86_64")
    table = elf_symbols(str(vmlinux))
    starts = sorted(theirs)
    sample = [table.lookup(n).address for n in KERNEL_FUNCTIONS] + starts[:: len(starts) // 200]
    for start in sample:
        end, rows = theirs[start]
        fde = frames.fde_at(start)
        assert fde is not None and (fde.start, fde.end) == (start, end)
        ours = fde_rows(fde, arch)
        for address, row in rows:
            state = next(s for a, s in reversed(ours) if a <= address)
            assert spelled(state, arch) == row, f"{address:#x}: {state}"


@dataclass(frozen=True)
class Orc:
    """ORC, parsed here on its own: sorted ips and their 6-byte entries."""

    ips: list[int]
    entries: list[tuple[int, int, int, int]]  # sp_offset, bp_offset, regs byte, flags byte

    def at(self, address: int) -> tuple[int, int, int, int]:
        k = bisect.bisect_right(self.ips, address) - 1
        return self.entries[k]


@functools.cache
def independent_orc(path: Path) -> Orc:
    with path.open("rb") as f:
        elf = ELFFile(f)
        ip_section = elf.get_section_by_name(".orc_unwind_ip")
        entry_section = elf.get_section_by_name(".orc_unwind")
        assert ip_section is not None and entry_section is not None
        base = ip_section["sh_addr"]
        raw_ips = ip_section.data()
        raw_entries = entry_section.data()
    ips = [base + 4 * i + w for i, (w,) in enumerate(struct.iter_unpack("<i", raw_ips))]
    entries = list(struct.iter_unpack("<hhBB", raw_entries))
    order = sorted(range(len(ips)), key=ips.__getitem__)
    return Orc([ips[i] for i in order], [entries[i] for i in order])


def _sp_depth_from_code(path: Path, name: str) -> dict[int, int]:
    """The CFA offset (bytes above rsp + 8) at each instruction the disassembly settles alone.

    From the entry along the straight-line prologue (pushes, ``sub rsp``),
    and backwards from each return through its epilogue (pops, ``add rsp``).
    """
    symbol = elf_symbols(str(path)).lookup(name)
    insns = disasm(open_elf(str(path)).read(symbol.address, symbol.size), "x86_64", symbol.address)
    depth: dict[int, int] = {}
    offset = 8
    for insn in insns:
        depth[insn.address] = offset
        if insn.mnemonic == "push":
            offset += 8
        elif m := re.fullmatch(r"rsp, (0x[0-9a-f]+)", insn.op_str):
            offset += int(m[1], 16) if insn.mnemonic == "sub" else 0
        if insn.mnemonic.startswith("j") or insn.mnemonic in ("ret", "call"):
            break
    thunk = elf_symbols(str(path)).lookup("__x86_return_thunk").address
    for k, insn in enumerate(insns):
        if not (insn.mnemonic == "ret" or insn.op_str == f"{thunk:#x}"):
            continue
        offset = 8
        for back in reversed(insns[: k + 1]):
            if back is not insn:
                if back.mnemonic == "pop":
                    offset += 8
                elif back.mnemonic == "add" and (
                    m := re.fullmatch(r"rsp, (0x[0-9a-f]+)", back.op_str)
                ):
                    offset += int(m[1], 16)
                else:
                    break
            depth[back.address] = offset
    return depth


def test_vmlinux_orc_agrees_with_an_independent_parse_and_the_code(vmlinux: Path) -> None:
    """ORC at every instruction of a few functions: knockout's == parsed here == pushes and pops."""
    ours = orc_table(str(vmlinux))
    theirs = independent_orc(vmlinux)
    assert ours is not None and len(ours) == len(theirs.ips)
    table = elf_symbols(str(vmlinux))
    checked = 0
    for name in KERNEL_FUNCTIONS:
        symbol = table.lookup(name)
        code = open_elf(str(vmlinux)).read(symbol.address, symbol.size)
        depth = _sp_depth_from_code(vmlinux, name)
        for insn in disasm(code, "x86_64", symbol.address):
            entry = ours.entry_at(insn.address)
            sp, bp, regs, bits = theirs.at(insn.address)
            assert entry is not None
            assert (entry.sp_offset, entry.bp_offset, entry.sp_reg, entry.bp_reg, entry.bits) == (
                sp,
                bp,
                regs & 0xF,
                regs >> 4,
                bits,
            )
            if insn.address in depth:
                assert entry.sp_reg == 5 and entry.sp_offset == depth[insn.address], insn
                checked += 1
    assert checked > 30


def test_vmlinux_states_hold_both_tables(vmlinux: Path) -> None:
    """A debug vmlinux's states carry .debug_frame and ORC, which agree on the CFA."""
    table = elf_symbols(str(vmlinux))
    arch = get_arch("x86_64")
    for name in KERNEL_FUNCTIONS:
        symbol = table.lookup(name)
        states = stack_states(str(vmlinux), symbol.address, symbol.end, 0, arch)
        assert states.source == ".debug_frame+ORC" and states.complete
        for _, state in states.rows:
            assert state.orc is not None and state.cfa_reg == "rsp"
            assert state.orc.sp_reg == 5 and state.orc.sp_offset == state.cfa_offset
