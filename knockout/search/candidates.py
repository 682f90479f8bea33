"""Candidate cut points of a function, in program order, each planned and validated.

The seed's engineer chose every cut by hand: return at the entry, force a
load to NULL, force a test false -- "modify this instruction to GOTO END".
:func:`candidates` lists every such point of one function, so a search
(``knockout bisect``, ``knockout climb``) can probe them:

* ``entry``: ``return V`` at the entry (after the landing pad / ftrace site);
* ``return-at``: at instruction P, the return register set to V and a jump
  to an epilogue -- valid **only where the stack state at P (the CFA rule
  and the saved registers, read from the unwind tables) equals the
  epilogue's**: the epilogue then restores exactly what the prologue saved;
* ``skip-call``: each call skipped, the return register set to 0 where the
  result is used;
* ``branch-taken`` / ``branch-not-taken``: each conditional branch forced;
* ``load``: each load into a register that feeds a conditional branch
  forced to 0 (the seed's ``ldr x28, [x0,#840]`` -> ``mov x28, #0``).

V comes from the DWARF return type (pointer -> NULL, integer -> 0, void ->
none), overridable.  Every point is planned by :mod:`knockout.plan`, the
way the target writes cuts (x86_64 kernel: a jump to a stub; arm64 kernel:
one word per cut, so a "return at P" there is a lone ``b EPILOGUE`` and
only in a void function), so every safety rule of a single cut applies;
a point the planner refuses comes back refused, with its reason, as does
one the caller's deny rule refuses (``refuse(symbol, address)``; for a
call site it is asked about the callee too, and a "return at P" is refused
where a call the rule refuses -- a lock, ``rcu_read_lock`` -- leads to P
and another -- its release -- would still run after P: returning there
would leave it taken).  Nothing is written.

Where the stack states come from (:mod:`knockout.unwind`): ``.eh_frame`` or
``.debug_frame`` of the function's ELF file (a process's mapped file, a
debug vmlinux).  With a debug vmlinux the ORC entries must agree as well.
Where only ORC describes a function (the CFA and the frame pointer, no
other saved register), a "return at P" also needs: the registers the
epilogue still pops from its landing point are the reverse of the
prologue's pushes (the pushes before the first branch), and the function
pushes nothing elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from knockout.arch import FLAGS, Arch, CodeStyle
from knockout.cuts import (
    POINT_KINDS,
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
from knockout.dwarf import SourceLine, debug_vmlinux, dwarf_lines, lines_for_addresses
from knockout.errors import BadInput, KnockoutError, NotFound, UnsafeCut
from knockout.insn import Insn
from knockout.plan import FunctionPlanner, returns_from
from knockout.plans import Point
from knockout.search.return_type import UNKNOWN, ReturnType, return_type
from knockout.symbols import Image, Symbol, SymbolTable, elf_symbols
from knockout.unwind import TABLES, FrameState, StackStates, stack_gap, stack_states

__all__ = [
    "KINDS",
    "Candidate",
    "Refuse",
    "ReturnValue",
    "candidates",
    "kind_of",
    "plan_point",
    "plan_points",
    "plan_spec",
    "return_points",
]

#: the kinds :func:`candidates` lists (``branch`` gives both ways of each branch)
KINDS = POINT_KINDS
#: the order of kinds at one address
_ORDER = ("entry", "return-at", "load", "set", "skip-call", "branch-taken", "branch-not-taken")
#: instructions looked at after a load or a call for who reads its register
_LOOKAHEAD = 24

#: the caller's deny rule: a reason to refuse cutting ``symbol`` at ``address``, or None
Refuse = Callable[[str, int], "str | None"]
#: a return value: an int, "void" (the return register is left alone) or None (from DWARF)
ReturnValue = int | Literal["void"] | None


@dataclass(frozen=True)
class Candidate:
    """One cut point: where, what, its plan (or why it is refused), its source line."""

    kind: str  #: entry, return-at, load, skip-call, branch-taken, branch-not-taken, set...
    address: int  #: where the cut starts (the planned cut's address when planned)
    location: str  #: ``function+0x1c``
    intent: Intent | None
    cut: Cut | None
    refused: str | None  #: the planner's or the deny rule's reason, None when planned
    source: SourceLine | None  #: the DWARF line of the instruction at ``address``
    text: str  #: one line: what the cut does
    name: str | None = None  #: a plan file's name for it

    @property
    def planned(self) -> bool:
        """The point can be cut (``cut`` is its plan)."""
        return self.cut is not None

    def as_json(self) -> dict[str, Any]:
        """The JSON record of this point."""
        return {
            "kind": self.kind,
            "name": self.name,
            "address": self.address,
            "location": self.location,
            "intent": describe_intent(self.intent) if self.intent is not None else None,
            "planned": self.planned,
            "refused": self.refused,
            "file": self.source.file if self.source else None,
            "line": self.source.line if self.source else None,
            "text": self.text,
            "old": self.cut.old.hex() if self.cut else None,
            "new": self.cut.new.hex() if self.cut else None,
        }


class _Reads(Protocol):
    """What candidates need from a target (a subset of :class:`knockout.targets.Target`)."""

    arch: Arch

    @property
    def description(self) -> str: ...

    def read(self, address: int, size: int) -> bytes: ...

    def symbols(self) -> SymbolTable: ...

    def code_style(self) -> CodeStyle: ...


def kind_of(intent: Intent) -> str:
    """The candidate kind a user's intent makes.

    >>> kind_of(SetReg("x28", 0)), kind_of(ForceBranch(taken=True))
    ('set', 'branch-taken')
    """
    match intent:
        case Return():
            return "entry"
        case ReturnAt():
            return "return-at"
        case SkipCall():
            return "skip-call"
        case ForceBranch(taken):
            return "branch-taken" if taken else "branch-not-taken"
        case SetReg():
            return "set"
        case Skip():
            return "skip"
        case RawBytes():
            return "bytes"
        case Identity():
            return "aa"
    raise AssertionError(intent)


# -- one function, read once ---------------------------------------------------------------


@dataclass
class _Function:
    """A function's live code with what the search knows about it."""

    target: _Reads
    table: SymbolTable
    symbol: Symbol
    planner: FunctionPlanner
    style: CodeStyle
    prefix: int  #: instructions of the entry prefix (never cut)
    sources: list[SourceLine | None]
    states: StackStates | None
    no_states: str  #: why there are no stack states
    returns: ReturnType
    refuse: Refuse | None
    _landings: list[_Landing] | None = field(default=None, repr=False)
    _brackets: list[_Bracket] | None = field(default=None, repr=False)
    index: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.index = {insn.address: k for k, insn in enumerate(self.insns)}

    @property
    def arch(self) -> Arch:
        return self.target.arch

    @property
    def insns(self) -> list[Insn]:
        return self.planner.insns

    def where(self, address: int) -> str:
        return self.planner.where(address)

    def source_at(self, address: int) -> SourceLine | None:
        k = self.index.get(address)
        return self.sources[k] if k is not None else None


def _image(target: _Reads, table: SymbolTable, symbol: Symbol, elf: str | None) -> Image | None:
    """The ELF file behind ``symbol`` (its DWARF and unwind tables), with its load bias."""
    if elf is not None:
        own = table.image_for(symbol.address)
        if own is not None and table.images and os.path.realpath(own.path) == os.path.realpath(elf):
            return own
        return Image(elf, _bias(table, elf))
    own = table.image_for(symbol.address) if table.images else None
    if own is not None:
        return own
    if getattr(target, "pid", 0) is None:  # the kernel: make setup's debug vmlinux
        found = debug_vmlinux()
        if found.path is not None:
            return Image(str(found.path), _bias(table, str(found.path)))
    return None


def _bias(table: SymbolTable, elf: str) -> int:
    """Runtime minus link-time addresses: the offset between the tables' ``_text`` (KASLR)."""
    try:
        return table.lookup("_text").address - elf_symbols(elf).lookup("_text").address
    except NotFound:
        return 0


def _sources(image: Image | None, symbol: Symbol, insns: list[Insn]) -> list[SourceLine | None]:
    if image is None:
        return [None] * len(insns)
    try:
        lines = dwarf_lines(image.path)
    except KnockoutError:
        lines = None
    if lines is None:
        return [None] * len(insns)
    bias = image.bias
    rows = [
        SourceLine(r.address + bias, r.file, r.line)
        for r in lines.rows(symbol.address - bias, symbol.end - bias)
    ]
    return lines_for_addresses(rows, [i.address for i in insns])


def _states(
    image: Image | None, symbol: Symbol, arch: Arch, tables: Sequence[str]
) -> tuple[StackStates | None, str]:
    if image is None:
        return None, (
            f"no ELF file for {symbol.name} (its unwind tables); give elf= the file "
            "(for the kernel: the debug vmlinux, make debug-vmlinux)"
        )
    bias = image.bias
    try:
        start, end = symbol.address - bias, symbol.end - bias
        states = stack_states(image.path, start, end, bias, arch, tables)
    except (NotFound, BadInput, OSError, ValueError, IndexError) as exc:
        return None, str(exc)
    return states, ""


def _open(
    target: _Reads,
    spec: str,
    elf: str | None,
    refuse: Refuse | None,
    where: str = "candidates",
    tables: Sequence[str] = TABLES,
) -> _Function:
    table = target.symbols()
    found = table.resolve(spec)
    symbol = found.symbol
    if symbol is None or not symbol.size:
        raise BadInput(f"{where} need a function with a known size; {spec!r} is not one")
    code = target.read(symbol.address, symbol.size)
    style = target.code_style()
    planner = FunctionPlanner(
        target.arch,
        code,
        symbol.address,
        target=target.description,
        location=symbol.name,
        style=style,
    )
    image = _image(target, table, symbol, elf)
    states, why = _states(image, symbol, target.arch, tables)
    returns = UNKNOWN
    if image is not None:
        returns = return_type(image.path, symbol.address - image.bias)
    return _Function(
        target,
        table,
        symbol,
        planner,
        style,
        target.arch.entry_prefix(planner.insns, style).count,
        _sources(image, symbol, planner.insns),
        states,
        why,
        returns,
        refuse,
    )


# -- planning one point ---------------------------------------------------------------------


def _denied(fn: _Function, subjects: Sequence[tuple[str, int]]) -> str | None:
    if fn.refuse is None:
        return None
    for name, address in subjects:
        reason = fn.refuse(name, address)
        if reason:
            return reason
    return None


def _make(
    fn: _Function,
    kind: str,
    address: int,
    intent: Intent,
    text: str,
    *,
    also: Sequence[tuple[str, int]] = (),
    name: str | None = None,
) -> Candidate:
    """Plan ``intent`` at ``address`` unless a deny rule refuses it first."""
    reason = _denied(fn, [(fn.symbol.name, address), *also])
    cut = None
    if reason is None:
        try:
            cut = fn.planner.plan(address, intent)
        except (BadInput, UnsafeCut) as exc:
            reason = str(exc)
    at = cut.address if cut is not None else address
    return Candidate(kind, at, fn.where(at), intent, cut, reason, fn.source_at(at), text, name)


def _refused(
    fn: _Function,
    kind: str,
    address: int,
    intent: Intent | None,
    text: str,
    reason: str,
    name: str | None = None,
) -> Candidate:
    return Candidate(
        kind, address, fn.where(address), intent, None, reason, fn.source_at(address), text, name
    )


def _value(fn: _Function, override: ReturnValue) -> int | None:
    if override == "void":
        return None
    if isinstance(override, int):
        return override
    return fn.returns.value


def _spoken(value: int | None) -> str:
    return "nothing (void)" if value is None else str(value)


# -- return at the entry, return at P -------------------------------------------------------


@dataclass(frozen=True)
class _Landing:
    """Where a "return at P" jumps: ``address`` in an epilogue, entered with ``state``.

    ``replay`` are the epilogue's restores before ``address`` (copied into
    the cut: the jump skips them, with the return value the epilogue sets
    between them); ``restores`` every register the epilogue then restores.
    """

    address: int
    state: FrameState
    replay: tuple[int, ...]
    restores: frozenset[str]


def _epilogue_start(fn: _Function, ret: int) -> int:
    """The first instruction of the epilogue ending at ``fn.insns[ret]``: walking back over
    restores and over instructions that only set the return value."""
    arch, insns = fn.arch, fn.insns
    j = ret
    while j - 1 >= fn.prefix:
        insn = insns[j - 1]
        plain = not arch.is_call(insn) and arch.branch_target(insn) is None
        plain = plain and not arch.ends_flow(insn) and not arch.is_indirect_jump(insn)
        plain = plain and not arch.is_padding(insn)  # dead filler after an exit, not an epilogue
        if not plain or not (arch.restores_only(insn) or arch.writes_only_return(insn)):
            break
        j -= 1
    return j


def _restored(fn: _Function, insns: Sequence[Insn]) -> frozenset[str]:
    """The registers ``insns`` (restores) write, but the stack pointer and the flags."""
    arch = fn.arch
    out: set[str] = set()
    for insn in insns:
        out |= arch.writes(insn)
    return frozenset(out - {arch.stack_register(), FLAGS})


def _landings(fn: _Function) -> list[_Landing]:
    """Every way into every epilogue: its start (replaying its restores up to the last
    return-value write), and each later restore with the state the unwind tables give it."""
    if fn._landings is not None:
        return fn._landings
    out: dict[tuple[int, tuple[int, ...]], _Landing] = {}
    states, arch, insns = fn.states, fn.arch, fn.insns
    for k, insn in enumerate(insns):
        if states is None or not returns_from(arch, insn, fn.style):
            continue
        first = _epilogue_start(fn, k)
        value_sets = [j for j in range(first, k) if not arch.restores_only(insns[j])]
        after = value_sets[-1] + 1 if value_sets else first
        start_state = states.at(insns[first].address)
        if start_state is not None:
            replay = tuple(
                i.address
                for i in insns[first:after]
                if arch.restores_only(i) and not arch.is_padding(i)
            )
            restores = _restored(fn, [i for i in insns[first:k] if arch.restores_only(i)])
            landing = _Landing(insns[after].address, start_state, replay, restores)
            out.setdefault((landing.address, replay), landing)
        for j in range(after, k + 1):
            state = states.at(insns[j].address)
            if state is not None:
                landing = _Landing(insns[j].address, state, (), _restored(fn, insns[j:k]))
                out.setdefault((landing.address, ()), landing)
    fn._landings = list(out.values())
    return fn._landings


def _restores_what_is_saved(fn: _Function, landing: _Landing) -> str | None:
    """The epilogue from ``landing`` restores exactly the registers its state says are saved.

    Unwind tables say where a saved register *is*; gcc's aarch64 tables keep
    a register "saved" until the epilogue's last restore, after the
    epilogue has already reloaded it, so an equal state alone does not
    prove the rest of the epilogue restores it.
    """
    saved = {reg for reg, _ in landing.state.saved} - {"ra", "ra_sign_state"}
    missing = sorted(saved - landing.restores)
    general = {r for r in landing.restores if fn.arch.canonical_register(r) in fn.arch.registers}
    extra = sorted(general - saved)
    if missing:
        return (
            f"the epilogue from {fn.where(landing.address)} does not restore {', '.join(missing)}"
        )
    if extra:
        return (
            f"the epilogue from {fn.where(landing.address)} reloads {', '.join(extra)}, not saved"
        )
    return None


def _pops_match_pushes(fn: _Function, at: Insn, landing: _Landing) -> str | None:
    """ORC only: what the epilogue pops (replays included) undoes the pushes made before ``at``.

    The prologue is the straight line of code from the entry to the first
    branch; ``at`` inside it has made the pushes before it, ``at`` after it
    all of them.
    """
    arch, insns = fn.arch, fn.insns
    pushes: list[str] = []
    k = fn.prefix
    while k < len(insns) and arch.branch_target(insns[k]) is None and not arch.ends_flow(insns[k]):
        reg = arch.pushed_register(insns[k])
        if reg is not None:
            pushes.append(reg)
        k += 1
    later = [i for i in insns[k:] if arch.pushed_register(i) is not None]
    if later:
        return (
            f"{fn.where(later[0].address)} pushes outside the prologue and only ORC describes "
            f"{fn.symbol.name} (no saved registers): cannot tell what the epilogue restores"
        )
    made = pushes
    if fn.index[at.address] < k:
        made = [r for r in map(arch.pushed_register, insns[fn.prefix : fn.index[at.address]]) if r]
    run = [insns[fn.index[a]] for a in landing.replay]
    for insn in insns[fn.index[landing.address] :]:
        if returns_from(arch, insn, fn.style):
            break
        run.append(insn)
    pops = [r for r in map(arch.popped_register, run) if r is not None]
    if pops != list(reversed(made)):
        return (
            f"the epilogue at {fn.where(landing.address)} pops {', '.join(pops) or 'nothing'} "
            f"but {fn.where(at.address)} has pushed {', '.join(made) or 'nothing'}"
        )
    return None


def _ordered(matches: list[tuple[_Landing, int]], address: int) -> list[tuple[_Landing, int]]:
    """``(landing, gap)``, simplest first: no stack to free, nothing to replay; then the nearest
    epilogue after ``address``, then the nearest before it."""

    def key(match: tuple[_Landing, int]) -> tuple[int, int, bool, int]:
        landing, gap = match
        return (
            gap > 0,
            len(landing.replay),
            landing.address <= address,
            abs(landing.address - address),
        )

    return sorted(matches, key=key)


def _successors(fn: _Function, k: int) -> list[int]:
    """Indexes control may go to after ``fn.insns[k]`` (every one, after an indirect jump)."""
    arch, insn = fn.arch, fn.insns[k]
    if returns_from(arch, insn, fn.style):
        return []
    if arch.is_indirect_jump(insn):
        return list(range(len(fn.insns)))  # a jump table: anywhere
    out = []
    target = arch.branch_target(insn)
    if target is not None and not arch.is_call(insn) and target in fn.index:
        out.append(fn.index[target])
    if not arch.ends_flow(insn) and k + 1 < len(fn.insns):
        out.append(k + 1)
    return out


def _reach(start: int, edges: list[list[int]]) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@dataclass(frozen=True)
class _Bracket:
    """A call the deny rule refuses: what runs after it (``after``), and what leads to it
    (``leading``: the call itself too -- returning there skips it)."""

    call: Insn
    callee: str
    rule: str
    after: frozenset[int]
    leading: frozenset[int]


def _brackets(fn: _Function) -> list[_Bracket]:
    """The calls in ``fn`` (past its entry's ftrace site) whose callee the deny rule refuses."""
    if fn._brackets is not None:
        return fn._brackets
    out: list[_Bracket] = []
    arch = fn.arch
    if fn.refuse is not None:
        forward = [_successors(fn, k) for k in range(len(fn.insns))]
        backward: list[list[int]] = [[] for _ in fn.insns]
        for k, nexts in enumerate(forward):
            for j in nexts:
                backward[j].append(k)
        for k in range(fn.prefix, len(fn.insns)):
            insn = fn.insns[k]
            callee = arch.branch_target(insn) if arch.is_call(insn) else None
            found = fn.table.symbolize(callee) if callee is not None else None
            if callee is None or found is None or found.symbol is None:
                continue
            rule = fn.refuse(found.symbol.name, callee)
            if rule:
                after = frozenset(_reach(k, forward) - {k})
                leading = frozenset(_reach(k, backward))  # returning at the call skips it
                out.append(_Bracket(insn, found.symbol.name, rule, after, leading))
    fn._brackets = out
    return out


def _skips_a_release(fn: _Function, insn: Insn) -> str | None:
    """Why returning at ``insn`` would leave something taken: a denied call (a lock, RCU)
    leads here and another denied call (its release) would run after it; else None."""
    k = fn.index[insn.address]
    brackets = _brackets(fn)
    taken = next((b for b in brackets if k in b.after), None)
    release = next((b for b in brackets if k in b.leading), None)
    if taken is None or release is None:
        return None
    return (
        f"returning at {fn.where(insn.address)} skips the call of {release.callee} at "
        f"{fn.where(release.call.address)} after {taken.callee} at "
        f"{fn.where(taken.call.address)} ran ({release.rule}): what it took would stay taken"
    )


def _return_here(
    fn: _Function,
    kind: str,
    insn: Insn,
    value: int | None,
    *,
    epilogue: int | None = None,
    name: str | None = None,
) -> Candidate:
    """``return value`` at ``insn``: a jump to an epilogue with the same stack state.

    The same state, or one that freeing the locals (``add sp, N``) makes
    the same: an epilogue that sets the return value after its ``add
    rsp`` is then entered after it.
    """
    intent = ReturnAt(value, epilogue)
    text = f"return {_spoken(value)} at {fn.where(insn.address)}"
    if fn.states is None:
        return _refused(fn, kind, insn.address, intent, text, fn.no_states, name)
    bracketed = _skips_a_release(fn, insn)
    if bracketed is not None:
        return _refused(fn, kind, insn.address, intent, text, bracketed, name)
    state = fn.states.at(insn.address)
    if state is None:
        reason = (
            f"{fn.where(insn.address)} lies outside the unwind tables' range of {fn.symbol.name}"
        )
        return _refused(fn, kind, insn.address, intent, text, reason, name)
    sp = fn.arch.stack_register()
    matches = [
        (landing, gap)
        for landing in _landings(fn)
        if (gap := stack_gap(state, landing.state, sp)) is not None
        and (epilogue is None or landing.address == epilogue)
    ]
    if not matches:
        reason = f"no epilogue of {fn.symbol.name} has the stack state here ({state})"
        if epilogue is not None:
            reason = (
                f"the stack state at {fn.where(insn.address)} ({state}) is not that of "
                f"{fn.where(epilogue)}"
            )
        return _refused(fn, kind, insn.address, intent, text, reason, name)
    unfit: Candidate | None = None  # the first landing whose epilogue does not fit
    refused: Candidate | None = None  # the first the planner refused
    for landing, gap in _ordered(matches, insn.address):
        if fn.states.complete:
            why = _restores_what_is_saved(fn, landing)
        else:
            why = _pops_match_pushes(fn, insn, landing)
        intent = ReturnAt(value, landing.address, gap, landing.replay)
        text = _return_text(fn, insn, value, landing, gap, state)
        if why is not None:
            unfit = unfit or _refused(fn, kind, insn.address, intent, text, why, name)
            continue
        tried = _make(fn, kind, insn.address, intent, text, name=name)
        if tried.planned:
            return tried
        refused = refused or tried
    found = refused or unfit
    assert found is not None
    return found


def _return_text(
    fn: _Function, insn: Insn, value: int | None, landing: _Landing, gap: int, state: FrameState
) -> str:
    extra = []
    if gap:
        extra.append(f"freeing {gap} bytes of locals")
    if landing.replay:
        extra.append(f"replaying {len(landing.replay)} restores")
    how = f" ({', '.join(extra)})" if extra else ""
    assert fn.states is not None
    return (
        f"return {_spoken(value)} at {fn.where(insn.address)}: jump to the epilogue at "
        f"{fn.where(landing.address)}{how}; same stack state ({fn.states.source}: CFA "
        f"{state.cfa}, {len(state.saved)} register rule{'' if len(state.saved) == 1 else 's'})"
    )


def _entry(fn: _Function, override: ReturnValue, name: str | None = None) -> Candidate:
    value = _value(fn, override)
    rtype = "" if fn.returns is UNKNOWN else f" ({fn.returns.name})"
    text = f"{fn.symbol.name} returns {_spoken(value)} at its entry{rtype}"
    entry = _make(
        fn, "entry", fn.symbol.address, Return(0 if value is None else value), text, name=name
    )
    if entry.planned or value is not None or fn.prefix >= len(fn.insns):
        return entry
    # a void function where "xor/mov + ret" does not fit (arm64 kernel: one word): jump instead
    jumped = _return_here(fn, "entry", fn.insns[fn.prefix], None, name=name)
    return jumped if jumped.planned else entry


# -- calls, branches, loads -----------------------------------------------------------------


def _result_used(fn: _Function, k: int) -> bool:
    """The return register's value after the call ``fn.insns[k]`` may be read (conservative)."""
    arch, reg = fn.arch, fn.arch.return_register()
    for insn in fn.insns[k + 1 : k + 1 + _LOOKAHEAD]:
        if returns_from(arch, insn, fn.style):
            return fn.returns.kind != "void"
        if reg in arch.reads(insn):
            return True
        if reg in arch.writes(insn):
            return False
        if arch.is_call(insn) or arch.ends_flow(insn) or arch.branch_target(insn) is not None:
            return True
    return True


def _calls(fn: _Function) -> Iterator[Candidate]:
    arch = fn.arch
    for k in range(fn.prefix, len(fn.insns)):
        insn = fn.insns[k]
        if not arch.is_call(insn):
            continue
        callee = arch.branch_target(insn)
        found = fn.table.symbolize(callee) if callee is not None else None
        also = [(found.symbol.name, callee)] if found and found.symbol and callee else []
        called = found.symbol.name if found and found.symbol else insn.op_str
        used = _result_used(fn, k)
        intent = SkipCall(0 if used else None)
        effect = "its result, read after it, becomes 0" if used else "its result is not read"
        yield _make(
            fn,
            "skip-call",
            insn.address,
            intent,
            f"skip the call of {called} ({effect})",
            also=also,
        )


def _branches(fn: _Function) -> Iterator[Candidate]:
    arch = fn.arch
    for insn in fn.insns[fn.prefix :]:
        if not arch.is_conditional_branch(insn):
            continue
        target = arch.branch_target(insn)
        assert target is not None
        yield _make(
            fn,
            "branch-taken",
            insn.address,
            ForceBranch(True),
            f"'{insn.text}' always taken (to {fn.where(target)})",
        )
        yield _make(
            fn,
            "branch-not-taken",
            insn.address,
            ForceBranch(False),
            f"'{insn.text}' never taken (falls through to {fn.where(insn.end)})",
        )


def _feeds_branch(fn: _Function, k: int, reg: str) -> Insn | None:
    """The conditional branch the value ``fn.insns[k]`` loads into ``reg`` decides, or None.

    Directly (``cbz x28``) or through the flags of the last flag-setter that
    read it (``test rax, rax; je``), on the fall-through path.
    """
    arch = fn.arch
    alive, setter_read = True, False
    for insn in fn.insns[k + 1 : k + 1 + _LOOKAHEAD]:
        reads, writes = arch.reads(insn), arch.writes(insn)
        if arch.is_conditional_branch(insn):
            if (alive and reg in reads) or (FLAGS in reads and setter_read):
                return insn
        elif arch.is_call(insn) or arch.ends_flow(insn):
            return None
        if FLAGS in writes:
            setter_read = alive and reg in reads
        if reg in writes:
            alive = False
        if not alive and not setter_read:
            return None
    return None


def _loads(fn: _Function) -> Iterator[Candidate]:
    arch = fn.arch
    for k in range(fn.prefix, len(fn.insns)):
        insn = fn.insns[k]
        reg = arch.loaded_register(insn)
        full = arch.canonical_register(reg) if reg is not None else None
        if reg is None or full is None:
            continue
        branch = _feeds_branch(fn, k, full)
        if branch is None:
            continue
        text = (
            f"'{insn.text}' forced to 0 ({reg} decides '{branch.text}' at "
            f"{fn.where(branch.address)})"
        )
        yield _make(fn, "load", insn.address, SetReg(reg, 0), text)


def _return_ats(fn: _Function, override: ReturnValue) -> Iterator[Candidate]:
    value = _value(fn, override)
    if fn.states is None:
        insn = fn.insns[min(fn.prefix, len(fn.insns) - 1)]
        yield _refused(
            fn,
            "return-at",
            insn.address,
            ReturnAt(value),
            f"return {_spoken(value)} inside {fn.symbol.name}",
            fn.no_states,
        )
        return
    for insn in fn.insns[fn.prefix :]:
        if fn.states.at(insn.address) is not None:  # padding after the function has none
            yield _return_here(fn, "return-at", insn, value)


# -- the API --------------------------------------------------------------------------------


def _sorted(found: list[Candidate]) -> list[Candidate]:
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    return sorted(found, key=lambda c: (c.address, rank.get(c.kind, len(rank))))


def candidates(
    target: _Reads,
    function_spec: str,
    *,
    kinds: Sequence[str] = KINDS,
    return_value: ReturnValue = None,
    refuse: Refuse | None = None,
    elf: str | None = None,
    unwind: Sequence[str] = TABLES,
) -> list[Candidate]:
    """The cut points of the function ``function_spec`` names in ``target``, in program order.

    ``kinds`` selects among :data:`KINDS`; ``return_value`` overrides V
    (an int, or ``"void"``); ``refuse(symbol, address)`` is the caller's
    deny rule; ``elf`` is the ELF file with the function's unwind tables and
    DWARF (default: the file the target's symbol table maps there; for the
    kernel, make setup's debug vmlinux); ``unwind`` which of its tables to
    read (``("orc",)``: only ORC).  Refused points are in the list, with
    ``refused`` saying why.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise BadInput(f"unknown kinds {', '.join(unknown)}; choose among {', '.join(KINDS)}")
    fn = _open(target, function_spec, elf, refuse, tables=unwind)
    found: list[Candidate] = []
    if "entry" in kinds:
        found.append(_entry(fn, return_value))
    if "return-at" in kinds:
        found.extend(_return_ats(fn, return_value))
    if "load" in kinds:
        found.extend(_loads(fn))
    if "skip-call" in kinds:
        found.extend(_calls(fn))
    if "branch" in kinds:
        found.extend(_branches(fn))
    return _sorted(found)


def return_points(
    target: _Reads,
    function_spec: str,
    *,
    return_value: ReturnValue = None,
    refuse: Refuse | None = None,
    elf: str | None = None,
    unwind: Sequence[str] = TABLES,
) -> list[Candidate]:
    """The bisect's points: ``return V`` at the entry, then at every instruction, in program order.

    Cutting point *k* skips everything from there to the return; refused
    points (no epilogue with their stack state, no room, deny rule) are in
    the list with the reason: probe only ``c.planned`` ones.
    """
    return candidates(
        target,
        function_spec,
        kinds=("entry", "return-at"),
        return_value=return_value,
        refuse=refuse,
        elf=elf,
        unwind=unwind,
    )


def plan_point(
    target: _Reads,
    spec: str,
    intent: Intent | None = None,
    *,
    return_value: ReturnValue = None,
    refuse: Refuse | None = None,
    elf: str | None = None,
    name: str | None = None,
) -> Candidate:
    """The user's own point: ``intent`` at ``spec``, planned like the listed ones.

    No intent, or ``--return-at`` (:class:`ReturnAt` without an epilogue),
    means "return here": the epilogue is chosen from the unwind tables (an
    explicit epilogue is checked against them).  ``--return`` plans at the
    entry.  Other intents are planned as given.
    """
    point = Point(spec, intent, name)
    return plan_points(target, [point], return_value=return_value, refuse=refuse, elf=elf)[0]


def plan_points(
    target: _Reads,
    points: Sequence[Point],
    *,
    return_value: ReturnValue = None,
    refuse: Refuse | None = None,
    elf: str | None = None,
) -> list[Candidate]:
    """:func:`plan_point` for each :class:`knockout.plans.Point` (``--points``, a plan file).

    Points are returned in the order given; each function is read once.
    """
    opened: dict[int, _Function] = {}
    table = target.symbols()
    out = []
    for point in points:
        location = table.resolve(point.spec)
        key = location.symbol.address if location.symbol else location.address
        if key not in opened:
            opened[key] = _open(target, point.spec, elf, refuse, where="points")
        fn = opened[key]
        out.append(
            _one_point(fn, location.address, point.intent, return_value, point.name, point.spec)
        )
    return out


def _one_point(
    fn: _Function,
    address: int,
    intent: Intent | None,
    override: ReturnValue,
    name: str | None,
    spec: str,
) -> Candidate:
    if isinstance(intent, Return):
        return _entry(fn, intent.value, name)
    if intent is None or isinstance(intent, ReturnAt):
        value = _value(fn, override) if intent is None else intent.value
        if address == fn.symbol.address and fn.prefix < len(fn.insns):
            address = fn.insns[fn.prefix].address
        k = fn.index.get(address)
        if k is None:
            return _refused(
                fn,
                "return-at",
                address,
                intent,
                f"return at {spec}",
                f"{spec} is not the start of an instruction of {fn.symbol.name}",
                name,
            )
        epilogue = intent.epilogue if isinstance(intent, ReturnAt) else None
        return _return_here(fn, "return-at", fn.insns[k], value, epilogue=epilogue, name=name)
    text = f"{describe_intent(intent)} at {spec}"
    also: list[tuple[str, int]] = []
    if isinstance(intent, SkipCall):
        k = fn.index.get(address)
        callee = fn.arch.branch_target(fn.insns[k]) if k is not None else None
        found = fn.table.symbolize(callee) if callee is not None else None
        if found is not None and found.symbol is not None and callee is not None:
            also.append((found.symbol.name, callee))
    return _make(fn, kind_of(intent), address, intent, text, also=also, name=name)


def plan_spec(target: Any, spec: str, intent: Intent, *, refuse: Refuse | None = None) -> Cut:
    """The :class:`~knockout.cuts.Cut` of ``intent`` at ``spec``, as ``knockout cut`` makes it.

    ``--return-at`` takes its epilogue from the unwind tables
    (:func:`plan_point`, with the ``refuse`` deny hook); without a value
    (``ReturnAt(None)``) the function's DWARF return type gives it (0, NULL,
    nothing for void), as the search does.  Every other intent is planned by
    :func:`knockout.plan.plan_at`.  Raises :class:`~knockout.errors.UnsafeCut`
    with the reason when the point is refused.
    """
    from knockout.plan import plan_at

    if not isinstance(intent, ReturnAt):
        return plan_at(target, spec, intent)
    here = None if intent.value is None and intent.epilogue is None else intent
    candidate = plan_point(target, spec, here, refuse=refuse)
    if candidate.cut is None:
        raise UnsafeCut(
            f"{spec}: {candidate.refused or 'no epilogue with its stack state'}; "
            "list the points that can with `knockout points FUNC --kind return-at --planned`"
        )
    return candidate.cut
