"""The seed incident's four cut points, found on the running kernel by knockout itself.

The seed's engineer (``/work/shared/seed/README.md``) cut four points of
the shrinker path of a 4.18 aarch64 kernel by hand, with offsets read in gdb.
:func:`seed_cuts` finds their equivalents on the kernel it is given, from
the debug vmlinux's line table, the kernel's source text and the live
disassembly, and plans each with :func:`knockout.plan.plan_at`:

1. ``shrink_slab`` returns 0 at entry;
2. ``do_shrink_slab`` returns 0 at entry;
3. the load of the memcg's shrinker info (``info =
   shrinker_info_protected(memcg, nid)`` in ``shrink_slab_memcg``, the
   seed's ``ldr x28, [x0,#840]``) forced to NULL: ``shrink_slab_memcg``
   then takes its ``if (unlikely(!info)) goto unlock``;
4. the ``mem_cgroup_online()`` test forced false: ``shrink_slab_memcg``
   returns 0 at once.  Where the flag is loaded into a register (the seed's
   ``ldr w0, [x21,#124]``), that register is set to 0; where it is tested
   in memory (x86's ``test byte ptr [reg+off], imm``), the test and its
   conditional branch are replaced so that the "not online" path is taken.

Entry cuts need only kallsyms; the inner two need the debug vmlinux and
the source (``make setup`` fetches both) and come back unplanned, with the
reason, without them.  Nothing here writes kernel text.

``python -m knockout.seedcuts [--json]`` prints them for the running kernel
(root; loads knockout's module to read kernel text where /proc/kcore is
missing).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from knockout.arch import Arch, CodeStyle
from knockout.cuts import Cut, Intent, RawBytes, Return, SetReg, describe_intent
from knockout.dwarf import (
    DwarfLines,
    debug_vmlinux,
    dwarf_lines,
    kernel_source_dir,
    lines_for_addresses,
    source_text,
)
from knockout.errors import KnockoutError, NotFound
from knockout.insn import Insn
from knockout.plan import plan_at
from knockout.symbols import SymbolTable, elf_symbols

__all__ = [
    "SEED_SERIES",
    "SeedCut",
    "find_line",
    "seed_cuts",
    "seed_kernel",
]

#: the kernel series the seed's points are found on: Debian 12's 6.1 (before 6.7's lockless
#: shrinker walk, like the seed's 4.18); make setup fetches its debug vmlinux and source
SEED_SERIES = "6.1"


def _version_key(release: str) -> list[int]:
    """``6.1.0-57-amd64`` -> [6, 1, 0, 57]: numeric parts, for ordering releases.

    >>> sorted(["6.1.0-9-amd64", "6.1.0-57-amd64"], key=_version_key)[-1]
    '6.1.0-57-amd64'
    """
    return [int(part) for part in re.findall(r"\d+", release)]


def seed_kernel(series: str = SEED_SERIES, boot: Path = Path("/boot")) -> Path:
    """The newest installed ``vmlinuz-<series>.*`` with modules: the guest kernel to boot."""
    found = [
        k
        for k in boot.glob(f"vmlinuz-{series}.*")
        if Path("/lib/modules", k.name.removeprefix("vmlinuz-"), "modules.dep").exists()
    ]
    if not found:
        raise NotFound(
            f"no {boot}/vmlinuz-{series}.* with modules; apt-get install linux-image-amd64 "
            "(Debian 12's kernel) or run make setup"
        )
    return max(found, key=lambda k: _version_key(k.name))


class _Target(Protocol):
    """What finding and planning need from a target (a :class:`KernelTarget` has it)."""

    arch: Arch

    @property
    def description(self) -> str: ...

    def read(self, address: int, size: int) -> bytes: ...

    def symbols(self) -> SymbolTable: ...

    def code_style(self) -> CodeStyle: ...


@dataclass(frozen=True)
class SeedCut:
    """One of the seed's cuts on this kernel: where, what, why, and the plan (or refusal)."""

    name: str  #: the seed's wording, e.g. "shrink_slab returns 0"
    spec: str  #: where, as knockout specs are written (``shrink_slab+0x133``)
    intent: Intent | None
    source: str  #: ``file:line`` that justifies the point, or ""
    text: str  #: that line's source text, or ""
    why: str  #: one sentence: what the instruction there does
    cut: Cut | None  #: the planned cut, None if it was refused or could not be found
    refusal: str | None  #: the planner's refusal, or why the point could not be found

    def as_json(self) -> dict[str, Any]:
        """The JSON record of this cut point."""
        return {
            "name": self.name,
            "spec": self.spec,
            "intent": describe_intent(self.intent) if self.intent else None,
            "source": self.source,
            "text": self.text,
            "why": self.why,
            "planned": self.cut is not None,
            "location": self.cut.location if self.cut else None,
            "address": self.cut.address if self.cut else None,
            "old": self.cut.old.hex() if self.cut else None,
            "new": self.cut.new.hex() if self.cut else None,
            "refusal": self.refusal,
        }


# -- source text ------------------------------------------------------------------------


def find_line(
    lines: Sequence[str], start: str, wanted: str, *, within: int = 40, after: int = 0
) -> int | None:
    """The 1-based number of the first line matching ``wanted`` after one matching ``start``.

    ``start`` (a regex) finds a definition; ``wanted`` must match within
    ``within`` lines of it; ``after`` moves that many lines further on.

    >>> src = ["int f(void)", "{", "\\tif (!g())", "\\t\\treturn 0;", "}"]
    >>> find_line(src, r"^int f\\(", r"if \\(!g\\(\\)\\)", after=1)
    4
    """
    begin = re.compile(start)
    match = re.compile(wanted)
    for i, line in enumerate(lines):
        if begin.search(line):
            for j in range(i, min(i + within, len(lines))):
                if match.search(lines[j]):
                    return j + 1 + after
    return None


@functools.cache
def _read_source(path: Path) -> tuple[str, ...]:
    try:
        return tuple(path.read_text(errors="replace").splitlines())
    except OSError:
        return ()


@dataclass(frozen=True)
class _Lines:
    """The source lines the inner cuts are found by, read from the kernel's own source."""

    info_load: tuple[
        str, int
    ]  # return rcu_dereference_protected(memcg->nodeinfo[nid]->shrinker_info
    online_test: tuple[str, int]  # return !!(memcg->css.flags & CSS_ONLINE);
    not_online: tuple[str, int]  # the "return 0;" after if (!mem_cgroup_online(memcg))


def _source_lines(tree: Path) -> _Lines | str:
    """Find the three lines in ``tree``; a reason string when one is missing."""
    vmscan, memcontrol = "mm/vmscan.c", "include/linux/memcontrol.h"
    vm = _read_source(tree / vmscan)
    mc = _read_source(tree / memcontrol)
    info = find_line(vm, r"shrinker_info_protected\(struct mem_cgroup", r"->shrinker_info")
    online = find_line(mc, r"bool mem_cgroup_online\(struct mem_cgroup", r"css\.flags", within=6)
    not_online = find_line(
        vm, r"^static unsigned long shrink_slab_memcg\(", r"if \(!mem_cgroup_online\(", after=1
    )
    # Before the Linux kernel commit "mm: vmscan: move shrinker-related code into a separate
    # file" (in v6.7), the memcg shrinker walk lives in mm/vmscan.c; from v6.7 on it is in
    # mm/shrinker.c, and lockless: the seed's points are those of a kernel before 6.7.
    missing = [
        name
        for name, found in (
            (f"{vmscan}: shrinker_info_protected()", info),
            (f"{memcontrol}: mem_cgroup_online()", online),
            (f"{vmscan}: shrink_slab_memcg()'s online test", not_online),
        )
        if found is None
    ]
    if missing or info is None or online is None or not_online is None:
        return f"not found in {tree}: {', '.join(missing)} (a kernel before 6.7 is expected)"
    return _Lines((vmscan, info), (memcontrol, online), (vmscan, not_online))


# -- the live function, annotated -------------------------------------------------------


@dataclass(frozen=True)
class _Op:
    """An instruction of the live function with what capstone says it reads and writes."""

    insn: Insn
    line: tuple[str, int] | None
    reads_memory: bool
    written_reg: str | None  # the register operand it writes, if any


@functools.cache
def _detail_decoder(arch: Arch) -> Any:
    import capstone

    cs_arch, cs_mode = arch.capstone  # capstone 5's numbers
    cs = capstone.Cs(cs_arch, cs_mode)
    cs.detail = True
    return cs


def _operands(arch: Arch, insn: Insn) -> tuple[bool, str | None]:
    """(reads memory, the register it writes) from capstone's operand details.

    capstone's generic operand kinds (``CS_OP_REG``, ``CS_OP_MEM``) and
    access flags are the same on every ISA it decodes.
    """
    import capstone

    decoded = next(_detail_decoder(arch).disasm(insn.data, insn.address), None)
    if decoded is None:
        return False, None
    reads = written = None
    for op in decoded.operands:
        if op.type == capstone.CS_OP_MEM and op.access & capstone.CS_AC_READ:
            reads = True
        if op.type == capstone.CS_OP_REG and op.access & capstone.CS_AC_WRITE and written is None:
            written = decoded.reg_name(op.reg)
    return bool(reads), written


def _function_ops(
    target: _Target, lines: DwarfLines, offset: int, name: str
) -> tuple[int, list[_Op]]:
    """The live function ``name`` decoded, each instruction with its source line (or None)."""
    from knockout.listing import decode_all

    symbol = target.symbols().lookup(name)
    insns = decode_all(target.read(symbol.address, symbol.size), target.arch, symbol.address)
    rows = lines.rows(symbol.address - offset, symbol.end - offset)
    per_insn = lines_for_addresses(rows, [i.address - offset for i in insns])
    ops = []
    for insn, row in zip(insns, per_insn, strict=True):
        reads, written = _operands(target.arch, insn)
        ops.append(_Op(insn, (row.file, row.line) if row else None, reads, written))
    return symbol.address, ops


def _run_at(ops: list[_Op], line: tuple[str, int]) -> list[_Op]:
    """The first contiguous run of instructions from ``line``."""
    run: list[_Op] = []
    for op in ops:
        if op.line == line:
            run.append(op)
        elif run:
            break
    return run


# -- the four points --------------------------------------------------------------------


def _plan(target: _Target, spec: str, intent: Intent) -> tuple[Cut | None, str | None]:
    try:
        return plan_at(target, spec, intent), None
    except KnockoutError as exc:
        return None, str(exc)


def _spec(name: str, start: int, address: int) -> str:
    return f"{name}+{address - start:#x}" if address != start else name


def _entry_line(lines: DwarfLines, address: int, name: str, tree: Path | None) -> tuple[str, str]:
    """``file:line`` of a function's entry and its signature's text (gdb puts it at ``{``)."""
    at = lines.at(address)
    if at is None:
        return "", ""
    file, line = at
    dirs = [tree] if tree else []
    for n in range(line, max(line - 6, 0), -1):  # back from "{" to the line naming it
        text = (source_text(file, n, dirs) or "").strip()
        if f"{name}(" in text:
            return f"{file}:{n}", text
    return f"{file}:{line}", (source_text(file, line, dirs) or "").strip()


def _entry_cut(
    target: _Target,
    name: str,
    lines: DwarfLines | None,
    offset: int,
    tree: Path | None,
    why: str,
) -> SeedCut:
    intent = Return(0)
    source = text = ""
    if lines is not None:
        source, text = _entry_line(
            lines, target.symbols().lookup(name).address - offset, name, tree
        )
    cut, refusal = _plan(target, name, intent)
    return SeedCut(f"{name} returns 0", name, intent, source, text, why, cut, refusal)


def _missing(name: str, reason: str) -> SeedCut:
    return SeedCut(name, "", None, "", "", "", None, reason)


def _text(tree: Path, line: tuple[str, int]) -> str:
    return (source_text(line[0], line[1], [tree]) or "").strip()


_INFO = "shrinker info load forced to NULL"
_ONLINE = "mem_cgroup_online() forced false"


def _info_cut(target: _Target, start: int, ops: list[_Op], found: _Lines, tree: Path) -> SeedCut:
    run = _run_at(ops, found.info_load)
    loads = [op for op in run if op.reads_memory and op.written_reg]
    where = f"{found.info_load[0]}:{found.info_load[1]}"
    if not loads:
        return _missing(_INFO, f"no load into a register at {where} in shrink_slab")
    load = loads[-1]  # memcg->nodeinfo[nid] first, then ->shrinker_info
    assert load.written_reg is not None
    intent = SetReg(load.written_reg, 0)
    spec = _spec("shrink_slab", start, load.insn.address)
    cut, refusal = _plan(target, spec, intent)
    why = (
        f"'{load.insn.text}' loads info = memcg->nodeinfo[nid]->shrinker_info; with "
        f"{load.written_reg} = 0 shrink_slab_memcg() takes 'if (unlikely(!info)) goto unlock'"
    )
    return SeedCut(_INFO, spec, intent, where, _text(tree, found.info_load), why, cut, refusal)


def _branch_successors(arch: Arch, branch: Insn) -> tuple[int, int] | None:
    """(fall-through, taken) of a conditional branch, or None for anything else."""
    target = arch.branch_target(branch)
    if target is None or arch.is_call(branch) or arch.ends_flow(branch):
        return None
    return branch.end, target


def _online_cut(target: _Target, start: int, ops: list[_Op], found: _Lines, tree: Path) -> SeedCut:
    run = _run_at(ops, found.online_test)
    where = f"{found.online_test[0]}:{found.online_test[1]}"
    text = _text(tree, found.online_test)
    register_loads = [op for op in run if op.reads_memory and op.written_reg]
    if register_loads:  # the seed's ldr w0, [x21,#124]: the flags in a register
        load = register_loads[0]
        assert load.written_reg is not None
        intent: Intent = SetReg(load.written_reg, 0)
        spec = _spec("shrink_slab", start, load.insn.address)
        why = f"'{load.insn.text}' loads memcg->css.flags; 0 has no CSS_ONLINE bit"
        cut, refusal = _plan(target, spec, intent)
        return SeedCut(_ONLINE, spec, intent, where, text, why, cut, refusal)
    return _online_branch_cut(target, start, ops, run, found, where, text)


def _online_branch_cut(
    target: _Target,
    start: int,
    ops: list[_Op],
    run: list[_Op],
    found: _Lines,
    where: str,
    text: str,
) -> SeedCut:
    """The flags tested in memory: replace the test and its branch so 'not online' is taken."""
    arch = target.arch
    tests = [op for op in run if op.reads_memory]
    if not tests:
        return _missing(_ONLINE, f"no instruction reads memcg->css.flags at {where}")
    first = tests[0].insn
    after = [op.insn for op in ops if op.insn.address >= first.address]
    branch = next((i for i in after if _branch_successors(arch, i)), None)
    successors = _branch_successors(arch, branch) if branch else None
    if branch is None or successors is None:
        return _missing(_ONLINE, f"no conditional branch after '{first.text}' in shrink_slab")
    line_at = {op.insn.address: op.line for op in ops}
    fall, taken = successors
    size = branch.end - first.address
    if line_at.get(fall) == found.not_online:
        code = arch.nops(size)  # never branch: fall into 'return 0'
        how = "never taken"
    elif line_at.get(taken) == found.not_online:
        jump = arch.jump(first.address, taken).data
        code = jump + arch.nops(size - len(jump))
        how = "always taken"
    else:
        return _missing(
            _ONLINE,
            f"neither way of '{branch.text}' leads to {found.not_online[0]}:"
            f"{found.not_online[1]} (the 'return 0' of a memcg not online)",
        )
    intent = RawBytes(code)
    spec = _spec("shrink_slab", start, first.address)
    why = (
        f"'{first.text}' tests CSS_ONLINE in memcg->css.flags and '{branch.text}' branches on "
        f"it; replaced so that the branch is {how}: shrink_slab_memcg() returns 0 "
        f"({found.not_online[0]}:{found.not_online[1]})"
    )
    cut, refusal = _plan(target, spec, intent)
    return SeedCut(_ONLINE, spec, intent, where, text, why, cut, refusal)


def seed_cuts(
    target: _Target,
    *,
    vmlinux: Path | None = None,
    source_dir: Path | None = None,
    release: str | None = None,
) -> list[SeedCut]:
    """The seed's four cuts on ``target`` (the running kernel), planned but not applied.

    ``vmlinux`` and ``source_dir`` default to what ``make setup`` fetched
    for ``release`` (default: the running kernel).  Each point that cannot
    be found or planned says why in :attr:`SeedCut.refusal`.
    """
    debug = debug_vmlinux(release) if vmlinux is None else None
    vmlinux = vmlinux or (debug.path if debug else None)
    tree_found = kernel_source_dir(release) if source_dir is None else None
    source_dir = source_dir or (tree_found.path if tree_found else None)
    lines = dwarf_lines(str(vmlinux)) if vmlinux else None
    offset = 0
    if vmlinux is not None:
        live_text = target.symbols().lookup("_text").address
        offset = live_text - elf_symbols(str(vmlinux)).lookup("_text").address
    out = [
        _entry_cut(
            target,
            "shrink_slab",
            lines,
            offset,
            source_dir,
            "the shrinker walk of every reclaim pass, for the root and each memcg",
        ),
        _entry_cut(
            target,
            "do_shrink_slab",
            lines,
            offset,
            source_dir,
            "one shrinker's count and scan for one memcg",
        ),
    ]
    out.extend(_inner_cuts(target, lines, offset, source_dir, debug, tree_found))
    return out


def _inner_cuts(
    target: _Target,
    lines: DwarfLines | None,
    offset: int,
    tree: Path | None,
    debug: Any,
    tree_found: Any,
) -> list[SeedCut]:
    if lines is None or tree is None:
        reasons = [f.reason for f in (debug, tree_found) if f is not None and f.path is None]
        reason = "; ".join(reasons) or "no debug vmlinux or source tree given"
        return [_missing(_INFO, reason), _missing(_ONLINE, reason)]
    found = _source_lines(tree)
    if isinstance(found, str):
        return [_missing(_INFO, found), _missing(_ONLINE, found)]
    start, ops = _function_ops(target, lines, offset, "shrink_slab")
    return [
        _info_cut(target, start, ops, found, tree),
        _online_cut(target, start, ops, found, tree),
    ]


# -- command line -----------------------------------------------------------------------


def _print_text(cuts: list[SeedCut], write: Callable[[str], object]) -> None:
    for c in cuts:
        write(f"{c.name}: {c.spec or '-'}  {describe_intent(c.intent) if c.intent else ''}\n")
        if c.source:
            write(f"    {c.source}: {c.text}\n")
        if c.why:
            write(f"    {c.why}\n")
        if c.cut is not None:
            write(f"    planned at {c.cut.location}: {c.cut.old.hex()} -> {c.cut.new.hex()}\n")
        else:
            write(f"    not planned: {c.refusal}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the seed's cuts for the running kernel."""
    p = argparse.ArgumentParser(prog="python -m knockout.seedcuts", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.add_argument("--vmlinux", type=Path, help="a debug vmlinux (default: make setup's)")
    p.add_argument("--source-dir", type=Path, help="a kernel source tree (default: make setup's)")
    args = p.parse_args(argv)
    from knockout.targets.kernel import KernelTarget

    try:
        with KernelTarget() as target:
            cuts = seed_cuts(target, vmlinux=args.vmlinux, source_dir=args.source_dir)
    except (KnockoutError, NotFound) as exc:
        print(f"seedcuts: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([c.as_json() for c in cuts], indent=1))
    else:
        _print_text(cuts, sys.stdout.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
