"""Planning a cut: from an intent and the real bytes of a function to a :class:`Cut`.

Nothing here writes anywhere.  :func:`plan_cut` disassembles the function
from its start, so every refusal is about the code as it really is: an
offset inside an instruction, a cut past the function's end, a replacement
that does not fit, a branch into the middle of the cut, ftrace's entry nop.
:func:`plan_cuts` plans many cuts of one function, decoding it once.

>>> from knockout.cuts import SetReg
>>> code = bytes.fromhex("1c0080d2" "1c a4 41 f9".replace(" ", "") + "c0035fd6")
>>> c = plan_cut("arm64", code, 0x1000, 0x1004, SetReg("x28", 0), target="t", location="f")
>>> c.location, c.old.hex(), c.new.hex(), c.instructions
('f+0x4', '1ca441f9', '1c0080d2', 1)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from knockout.arch import FLAGS, Arch, CodeStyle, EntryPrefix, get_arch
from knockout.asm import disasm
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
)
from knockout.errors import BadInput, KnockoutError, UnsafeCut
from knockout.insn import Encoded, Insn, joined, text_of
from knockout.symbols import Location

__all__ = [
    "CodeStyle",
    "FunctionPlanner",
    "plan_at",
    "plan_cut",
    "plan_cuts",
    "returns_from",
    "stub_code",
]

#: how far :func:`plan_at` reads a function whose size the symbol table does not know
MAX_UNSIZED = 64 * 1024
_PAGE = 4096
#: how many instructions after a cut the flags' next reader is looked for
_FLAGS_LOOKAHEAD = 32


def returns_from(arch: Arch, insn: Insn, style: CodeStyle) -> bool:
    """``insn`` returns from the function: a return, or a jump to the target's return thunk."""
    if arch.is_return(insn):
        return True
    thunk = style.return_thunk
    return thunk is not None and arch.ends_flow(insn) and arch.branch_target(insn) == thunk


class _Function:
    """A function's bytes decoded from its start, with offsets named ``name+0x..``."""

    def __init__(self, arch: Arch, code: bytes, start: int, name: str) -> None:
        self.arch = arch
        self.code = code
        self.start = start
        self.name = name
        self.insns = disasm(code, arch, start)
        self.addresses = [i.address for i in self.insns]
        self.end = start + len(code)
        self.decoded_end = self.insns[-1].end if self.insns else start
        #: direct branches and their destinations, in program order
        self.branches = [(i, t) for i in self.insns if (t := arch.branch_target(i)) is not None]
        self.targets = sorted(t for _, t in self.branches)
        self.indirect = next((i for i in self.insns if arch.is_indirect_jump(i)), None)

    def branch_into(self, start: int, end: int) -> tuple[Insn, int] | None:
        """The first branch (in program order) to an address strictly inside ``(start, end)``."""
        k = bisect.bisect_right(self.targets, start)
        if k == len(self.targets) or self.targets[k] >= end:
            return None
        return next((i, t) for i, t in self.branches if start < t < end)

    def where(self, address: int) -> str:
        off = address - self.start
        if off == 0:
            return self.name
        return f"{self.name}+{off:#x}" if off > 0 else f"{self.name}-{-off:#x}"

    def index_at(self, address: int, what: str = "the cut") -> int:
        """The index of the instruction starting at ``address``; refuses anything else."""
        if not self.start <= address < self.end:
            raise BadInput(
                f"{self.where(address)} is outside {self.name}, which spans {self.len_text()}; "
                f"use an offset below {len(self.code):#x}"
            )
        if address >= self.decoded_end:
            raise UnsafeCut(
                f"cannot decode {self.name} at {self.where(self.decoded_end)} "
                f"(before {what} at {self.where(address)}); check the arch and the address"
            )
        i = bisect.bisect_right(self.addresses, address) - 1
        insn = self.insns[i]
        if insn.address != address:
            raise BadInput(
                f"{self.where(address)} is inside the {insn.size}-byte instruction at "
                f"{self.where(insn.address)}; use {self.where(insn.address)} "
                f"or {self.where(insn.end)}"
            )
        return i

    def len_text(self) -> str:
        return f"{len(self.code):#x} bytes"


@dataclass
class _Region:
    """What a cut covers: ``first`` and how many instructions, and the bytes that replace them."""

    first: int
    count: int
    replacement: bytes  # for the first ``replaced`` instructions; padded later
    replaced: int  # how many of ``count`` the replacement stands for; the rest are displaced


def _cover(fn: _Function, first: int, nbytes: int, what: str) -> int:
    """How many instructions from ``first`` it takes to cover ``nbytes``; refuses past the end."""
    total, count = 0, 0
    at = fn.insns[first].address if first < len(fn.insns) else fn.decoded_end
    while total < nbytes:
        if first + count >= len(fn.insns):
            raise UnsafeCut(
                f"{what} needs {nbytes} bytes from {fn.where(at)} but {fn.name} ends after "
                f"{total}; cut an earlier instruction"
            )
        total += fn.insns[first + count].size
        count += 1
    return count


def _return_region(fn: _Function, address: int, intent: Return, style: CodeStyle) -> _Region:
    prefix = fn.arch.entry_prefix(fn.insns, style)
    first = min(prefix.count, len(fn.insns) - 1)
    at = fn.insns[first].address
    if not fn.start <= address <= at:
        raise BadInput(
            f"a return cut goes at the entry of {fn.name} (it lands at {fn.where(at)}); "
            f"to cut at {fn.where(address)} use --set, --skip, --skip-call or --bytes"
        )
    code = fn.arch.encode_return(intent.value, at, prefix, style)
    data = joined(code)
    count = _cover(fn, first, len(data), f"'{text_of(code)}'")
    return _Region(first, count, data, count)


def _fit(fn: _Function, insn: Insn, code: list[Encoded], what: str) -> bytes:
    data = joined(code)
    if len(data) > insn.size:
        raise BadInput(
            f"{text_of(code)} needs {len(data)} bytes but the instruction at "
            f"{fn.where(insn.address)} has {insn.size}; "
            f"{fn.arch.fit_hint(what, len(data), insn.size)}"
        )
    return data


def _flags_read_after(fn: _Function, index: int) -> Insn | None:
    """The instruction that may read the flags as they are after ``fn.insns[index]``, or None.

    Following the fall-through path: a full write of the flags, a call or a
    return ends their life (the ABI keeps no flags across either); a
    reader, a jump or the end of what was looked at counts as a read.
    """
    arch = fn.arch
    for insn in fn.insns[index + 1 : index + 1 + _FLAGS_LOOKAHEAD]:
        if FLAGS in arch.reads(insn):
            return insn
        if FLAGS in arch.writes(insn) or arch.is_call(insn) or arch.is_return(insn):
            return None
        if arch.ends_flow(insn) or arch.branch_target(insn) is not None:
            return insn
    return fn.insns[min(index + _FLAGS_LOOKAHEAD, len(fn.insns) - 1)]


def _set_bytes(fn: _Function, index: int, intent: SetReg) -> bytes:
    """``reg = value`` in one instruction's room; 0 may take the shorter ``xor`` (dead flags)."""
    insn = fn.insns[index]
    code = fn.arch.set_register(intent.reg, intent.value)
    compact = fn.arch.compact_zero(intent.reg) if intent.value == 0 else None
    if len(joined(code)) > insn.size and compact is not None and len(joined(compact)) <= insn.size:
        reader = _flags_read_after(fn, index)
        if reader is None:
            return joined(compact)
        raise BadInput(
            f"{text_of(code)} needs {len(joined(code))} bytes but the instruction at "
            f"{fn.where(insn.address)} has {insn.size}, and '{text_of(compact)}' would clobber "
            f"the flags '{reader.text}' at {fn.where(reader.address)} may read; cut a longer "
            "instruction, or use --bytes"
        )
    return _fit(fn, insn, code, "set")


def _skip_call_bytes(fn: _Function, index: int, intent: SkipCall) -> bytes:
    insn = fn.insns[index]
    if not fn.arch.is_call(insn):
        raise BadInput(
            f"the instruction at {fn.where(insn.address)} is '{insn.text}', not a call; "
            "use --skip or --set there, or give the call's offset"
        )
    if all(fn.arch.is_padding(i) for i in fn.insns[index + 1 :]):
        raise UnsafeCut(
            f"'{insn.text}' at {fn.where(insn.address)} never returns (only padding follows it "
            f"to the end of {fn.name}): skipping it would run into what follows; cut elsewhere"
        )
    return _fit(fn, insn, fn.arch.skip_call(intent.value), "skip-call")


def _dead_after(fn: _Function, first: int, code: list[Encoded]) -> _Region:
    """``code`` ends in a jump: what it covers after itself never runs (padded, not moved)."""
    data = joined(code)
    count = _cover(fn, first, len(data), f"'{text_of(code)}'")
    return _Region(first, count, data, count)


def _force_branch_region(
    fn: _Function, first: int, intent: ForceBranch, style: CodeStyle
) -> _Region:
    insn = fn.insns[first]
    if not fn.arch.is_conditional_branch(insn):
        raise BadInput(
            f"the instruction at {fn.where(insn.address)} is '{insn.text}', not a conditional "
            "branch; give a conditional branch's offset"
        )
    code = fn.arch.force_branch(insn, intent.taken, style)
    if intent.taken and style.jump_stub:
        return _dead_after(fn, first, code)  # the stub's jump re-aimed; what follows is dead
    return _Region(first, 1, _fit(fn, insn, code, "force-branch"), 1)


def _check_epilogue(fn: _Function, index: int, style: CodeStyle) -> None:
    """From ``fn.insns[index]`` on, only restores then a return: an epilogue."""
    arch = fn.arch
    for insn in fn.insns[index:]:
        if returns_from(arch, insn, style):
            return
        if not arch.restores_only(insn):
            break
    start = fn.insns[index]
    raise BadInput(
        f"{fn.where(start.address)} ('{start.text}') does not start an epilogue (code that only "
        "restores saved registers and returns); give an epilogue's address"
    )


def _replayed(fn: _Function, address: int) -> Encoded:
    """An epilogue's restore, copied into a ``--return-at`` cut: it must move verbatim."""
    insn = fn.insns[fn.index_at(address, "the restore to replay")]
    if not fn.arch.restores_only(insn) or fn.arch.position_dependence(insn) is not None:
        raise BadInput(
            f"{fn.where(address)} ('{insn.text}') is not a restore a cut can copy (it must only "
            "restore a saved register or the stack pointer, position-independently)"
        )
    return Encoded(insn.text, insn.data)


def _return_at_region(fn: _Function, first: int, intent: ReturnAt, style: CodeStyle) -> _Region:
    """``--return-at``: the return value, then a jump to the epilogue; what it covers is dead."""
    insn = fn.insns[first]
    if intent.epilogue is None:
        raise BadInput(
            f"--return-at at {fn.where(insn.address)} needs the epilogue to jump to; plan it "
            "with knockout.search (it reads the unwind tables) or give ReturnAt(epilogue=ADDRESS)"
        )
    landing = fn.index_at(intent.epilogue, "the epilogue")
    _check_epilogue(fn, landing, style)
    replay = [_replayed(fn, address) for address in intent.replay]
    code = fn.arch.encode_return_at(
        intent.value, insn.address, intent.epilogue, style, intent.pop, replay
    )
    region = _dead_after(fn, first, code)
    end = fn.insns[first + region.count - 1].end
    if insn.address <= intent.epilogue < end:
        raise UnsafeCut(
            f"the epilogue at {fn.where(intent.epilogue)} lies inside the cut "
            f"{fn.where(insn.address)}..{fn.where(end)}; jump to another epilogue or cut earlier"
        )
    return region


def _raw_region(fn: _Function, first: int, data: bytes) -> _Region:
    start = fn.insns[first].address
    end = start + len(data)
    if end > fn.decoded_end:
        raise BadInput(
            f"{len(data)} bytes from {fn.where(start)} run past the end of {fn.name} "
            f"({fn.where(fn.decoded_end)}); give fewer bytes"
        )
    count = _cover(fn, first, len(data), f"{len(data)} raw bytes")
    last = fn.insns[first + count - 1]
    if last.end != end:
        sizes = [n for n in (last.address - start, last.end - start) if n]
        raise BadInput(
            f"{len(data)} bytes from {fn.where(start)} end inside the {last.size}-byte instruction "
            f"at {fn.where(last.address)}; give {' or '.join(map(str, sizes))} bytes"
        )
    return _Region(first, count, data, count)


def _region(fn: _Function, address: int, intent: Intent, style: CodeStyle) -> _Region:
    """The instructions ``intent`` replaces at ``address`` and what replaces them.

    Every intent at the function's first byte lands where a return would:
    after the entry's landing pad and ftrace site.
    """
    if isinstance(intent, Return):
        return _return_region(fn, address, intent, style)
    prefix = fn.arch.entry_prefix(fn.insns, style)
    if address == fn.start and 0 < prefix.count < len(fn.insns):
        address = fn.insns[prefix.count].address
    first = fn.index_at(address)
    insn = fn.insns[first]
    if isinstance(intent, RawBytes):
        if not intent.data:
            raise BadInput("--bytes needs at least one byte; write e.g. --bytes 90")
        return _raw_region(fn, first, intent.data)
    if isinstance(intent, ReturnAt):
        return _return_at_region(fn, first, intent, style)
    if isinstance(intent, ForceBranch):
        return _force_branch_region(fn, first, intent, style)
    if isinstance(intent, SetReg):
        data = _set_bytes(fn, first, intent)
    elif isinstance(intent, SkipCall):
        data = _skip_call_bytes(fn, first, intent)
    elif isinstance(intent, Skip):
        data = b""
    elif isinstance(intent, Identity):
        data = insn.data
    else:
        raise BadInput(f"unknown intent {intent!r}")
    return _Region(first, 1, data, 1)


def _ends_in_jump(intent: Intent) -> bool:
    """The replacement leaves by itself (a return or a jump): no code after it runs."""
    if isinstance(intent, ForceBranch):
        return intent.taken
    return isinstance(intent, Return | ReturnAt)


def _widen_for_stub(fn: _Function, region: _Region, intent: Intent, jump_len: int) -> None:
    """Grow ``region`` to the ``jump_len``-byte jump to the stub; displaced code must move."""
    size = sum(i.size for i in fn.insns[region.first : region.first + region.count])
    if size >= jump_len:
        return
    extra = _cover(fn, region.first + region.count, jump_len - size, "the jump to the stub")
    region.count += extra
    if _ends_in_jump(intent):
        region.replaced = region.count  # dead after the return or jump: padded, not copied
        return
    start = fn.insns[region.first].address
    for insn in fn.insns[region.first + region.replaced : region.first + region.count]:
        if fn.arch.is_call(insn):
            raise UnsafeCut(_stub_refusal(fn, start, insn, fn.arch.stub_refusal(insn) or ""))
        why = fn.arch.position_dependence(insn)
        if why is not None:
            raise UnsafeCut(
                f"the {jump_len}-byte jump to the stub at {fn.where(start)} also displaces "
                f"{fn.where(insn.address)}: {why}, so its copy in the stub would go wrong; "
                f"cut {fn.where(insn.address)} itself, or cut elsewhere"
            )


def _stub_refusal(fn: _Function, address: int, insn: Insn, why: str) -> str:
    fix = "cut the call itself (--skip-call) or cut elsewhere" if fn.arch.is_call(insn) else (
        "cut without it"
    )
    return (
        f"the stub for {fn.where(address)} would hold '{insn.text}' (at "
        f"{fn.where(insn.address)}): {why}; {fix}"
    )


def _check_stub(fn: _Function, address: int, new: bytes) -> None:
    """The stub's code must move (only what the arch re-aims) and hold no call or trap.

    A call in a stub would leave a return address pointing into the stub,
    which the kernel module recycles after the cut is reverted; the module
    refuses one (and traps the kernel finds by address, e.g. x86's INT3,
    INT n, UD2), and this refuses first, saying why.  Indirect jumps
    anywhere in the function are refused as x86 optprobes do: a jump table
    may land inside the covered range.
    """
    arch = fn.arch
    for insn in disasm(new, arch, address):
        why = arch.stub_refusal(insn)
        if why is not None:
            raise UnsafeCut(_stub_refusal(fn, address, insn, why))
        dependence = arch.position_dependence(insn)
        if dependence is not None and not arch.can_relocate(insn):
            raise UnsafeCut(
                f"the stub for {fn.where(address)} would hold '{insn.text}' ({dependence}); "
                "replace that instruction with the cut, or cut elsewhere"
            )
    indirect = fn.indirect
    if indirect is not None:
        raise UnsafeCut(
            f"{fn.where(indirect.address)} is an indirect jump ('{indirect.text}'), which may "
            f"land inside a jump-to-stub cut; {fn.name} cannot be cut this way"
        )


def _check_returns_outside_jump(fn: _Function, covered: Sequence[Insn], jump_len: int) -> None:
    """Refuse a covered call whose return address falls strictly inside the jump to the stub.

    A task asleep in the callee (or preempted there) returns to the end of
    the call; if that is inside the ``jump_len`` bytes the cut writes, it
    resumes in the middle of the jump's operand.  The kernel module refuses
    the same (e.g. ``call *%rax`` plus NOPs, the kernel's rewrite of a
    retpoline call on an eIBRS CPU, then ``--skip-call``).

    >>> code = bytes.fromhex("ffd0" "0f1f00" "c3")  # call rax; nop; ret
    >>> style = CodeStyle(jump_stub=True)
    >>> plan_cut("x86_64", code, 0, 0, SkipCall(), target="t", location="f", style=style)
    Traceback (most recent call last):
    ...
    knockout.errors.UnsafeCut: 'call rax' at f returns to f+0x2, inside the 5-byte jump the cut \
writes at f..f+0x5: a task asleep in the callee would resume in the middle of the jump; cut a \
call of 5 bytes or more, or cut at f+0x2 or later
    """
    start = covered[0].address
    jump_end = start + jump_len
    for insn in covered:
        if _is_call(fn.arch, insn) and start < insn.end < jump_end:
            raise UnsafeCut(
                f"'{insn.text}' at {fn.where(insn.address)} returns to {fn.where(insn.end)}, "
                f"inside the {jump_len}-byte jump the cut writes at {fn.where(start)}.."
                f"{fn.where(jump_end)}: a task asleep in the callee would resume in the middle "
                f"of the jump; cut a call of {jump_len} bytes or more, or cut at "
                f"{fn.where(insn.end)} or later"
            )


def _is_call(arch: Arch, insn: Insn) -> bool:
    """A call of any form, near or far (capstone names a far call ``lcall`` on some versions)."""
    return arch.is_call(insn) or insn.mnemonic.split()[-1] == "lcall"


def _check_stub_branches(fn: _Function, start: int, new: bytes, end: int) -> None:
    """Refuse a branch in ``new`` aimed strictly inside the replaced range ``start..end``.

    Inside the range only the jump to the stub and the original tail bytes
    remain: a branch there would land in the jump's operand.  The kernel
    module refuses a rel32 one the same way.

    >>> code = bytes.fromhex("b801000000" "c3")  # mov eax, 1; ret
    >>> into = bytes.fromhex("e9fdffffff")  # jmp f+0x2
    >>> style = CodeStyle(jump_stub=True)
    >>> plan_cut("x86_64", code, 0, 0, RawBytes(into), target="t", location="f", style=style)
    Traceback (most recent call last):
    ...
    knockout.errors.UnsafeCut: the cut's code at f holds 'jmp 2', aimed at f+0x2, inside the \
range f..f+0x5 it replaces (only a jump to the stub is there once it is in place); aim it at f, \
at f+0x5 or outside the range
    """
    for insn in disasm(new, fn.arch, start):
        target = fn.arch.branch_target(insn)
        if target is not None and start < target < end:
            raise UnsafeCut(
                f"the cut's code at {fn.where(start)} holds '{insn.text}', aimed at "
                f"{fn.where(target)}, inside the range {fn.where(start)}..{fn.where(end)} it "
                f"replaces (only a jump to the stub is there once it is in place); aim it at "
                f"{fn.where(start)}, at {fn.where(end)} or outside the range"
            )


def _check_falls_off(fn: _Function, region: _Region, intent: Intent) -> None:
    """Refuse replacing the function's last exit with code that falls through past its end."""
    if not isinstance(intent, Skip | SetReg | SkipCall):
        return
    last = fn.insns[region.first]
    is_last = region.first == len(fn.insns) - 1 or last.end >= fn.end
    if is_last and fn.arch.ends_flow(last):
        raise UnsafeCut(
            f"{fn.where(last.address)} is '{last.text}', the last instruction of {fn.name}; "
            "replacing it would run past the end into whatever follows; cut an earlier "
            "instruction or use --return"
        )


def _check_safe(fn: _Function, region: _Region, prefix: EntryPrefix) -> None:
    """Refuse cuts over the entry prefix, over a breakpoint, or with a branch into the middle."""
    arch = fn.arch
    covered = fn.insns[region.first : region.first + region.count]
    start, end = covered[0].address, covered[-1].end
    if region.first < prefix.count:
        owner = fn.insns[region.first]
        later = (
            fn.where(fn.insns[prefix.count].address)
            if prefix.count < len(fn.insns)
            else "a later offset"
        )
        raise UnsafeCut(
            f"{fn.where(owner.address)} is '{owner.text}', which the entry needs "
            f"(IBT/BTI landing pad, pointer authentication or ftrace's call site); cut at {later}"
        )
    for k, insn in enumerate(covered):
        after_exit = k > 0 and arch.ends_flow(covered[k - 1])
        if arch.is_breakpoint(insn) and not after_exit:
            raise UnsafeCut(
                f"{fn.where(insn.address)} holds '{insn.text}' (a breakpoint or kprobe); "
                "remove it and plan the cut again"
            )
    into = fn.branch_into(start, end)
    if into is not None:
        insn, target = into
        raise UnsafeCut(
            f"{fn.where(insn.address)} ('{insn.text}') branches to {fn.where(target)}, "
            f"inside the cut {fn.where(start)}..{fn.where(end)}; cut fewer instructions "
            f"or start at {fn.where(target)}"
        )


def plan_cut(
    arch: Arch | str,
    code: bytes,
    code_address: int,
    address: int,
    intent: Intent,
    *,
    target: str,
    location: str,
    style: CodeStyle | None = None,
) -> Cut:
    """Plan ``intent`` at ``address`` in the function ``code`` that starts at ``code_address``.

    ``location`` names ``code_address`` (the function, e.g. ``"shrink_slab"``);
    the cut's own location is written relative to it (``"shrink_slab+0x150"``).
    ``target`` is stored in :attr:`Cut.target`.  Raises :class:`BadInput` for
    a request the code cannot hold and :class:`UnsafeCut` for one that
    would not be safe, each with the reason and what to do instead.
    """
    fn = _decoded(arch, code, code_address, location)
    return _plan(fn, address, intent, style or CodeStyle(), target)


class FunctionPlanner:
    """Plans cuts in one function, decoded once: :func:`plan_cut` for many addresses.

    >>> code = bytes.fromhex("1ca441f9c0035fd6")
    >>> planner = FunctionPlanner("arm64", code, 0x1000, target="t", location="f")
    >>> planner.plan(0x1000, SetReg("x28", 0)).new.hex()
    '1c0080d2'
    """

    def __init__(
        self,
        arch: Arch | str,
        code: bytes,
        code_address: int,
        *,
        target: str,
        location: str,
        style: CodeStyle | None = None,
    ) -> None:
        self.style = style or CodeStyle()
        self.target = target
        self._fn = _decoded(arch, code, code_address, location)

    @property
    def insns(self) -> list[Insn]:
        """The function's instructions, decoded from its start."""
        return self._fn.insns

    def where(self, address: int) -> str:
        """``address`` as ``name+0x..``."""
        return self._fn.where(address)

    def plan(self, address: int, intent: Intent) -> Cut:
        """The cut :func:`plan_cut` plans (or the refusal it raises)."""
        return _plan(self._fn, address, intent, self.style, self.target)


def plan_cuts(
    arch: Arch | str,
    code: bytes,
    code_address: int,
    requests: Sequence[tuple[int, Intent]],
    *,
    target: str,
    location: str,
    style: CodeStyle | None = None,
) -> list[Cut | KnockoutError]:
    """:func:`plan_cut` for each ``(address, intent)`` of one function, decoded once.

    Each entry is the planned :class:`Cut` or the refusal
    (:class:`BadInput`, :class:`UnsafeCut`) :func:`plan_cut` would raise.

    >>> code = bytes.fromhex("1c a4 41 f9 c0 03 5f d6".replace(" ", ""))
    >>> out = plan_cuts("arm64", code, 0x1000, [(0x1000, SetReg("x28", 0)), (0x1002, Skip())],
    ...                 target="t", location="f")
    >>> out[0].new.hex(), type(out[1]).__name__
    ('1c0080d2', 'BadInput')
    """
    planner = FunctionPlanner(
        arch, code, code_address, target=target, location=location, style=style
    )
    out: list[Cut | KnockoutError] = []
    for address, intent in requests:
        try:
            out.append(planner.plan(address, intent))
        except (BadInput, UnsafeCut) as exc:
            out.append(exc)
    return out


def _decoded(arch: Arch | str, code: bytes, code_address: int, location: str) -> _Function:
    fn = _Function(get_arch(arch), bytes(code), code_address, location)
    if not fn.insns:
        raise UnsafeCut(f"cannot decode {location} at its start; check the arch and the address")
    return fn


def _check_length(
    fn: _Function, start: int, new: bytes, count: int, style: CodeStyle, intent: Intent
) -> None:
    """Refuse a cut longer than the target writes at once (arm64's module: one word).

    A task preempted between two words would run half of the cut, so the
    refusal says which one-word cut gets the same effect.

    >>> one_word = CodeStyle(ftrace_entry=True, max_len=4)
    >>> code = bytes.fromhex("fd7bbfa9" "fd7bc1a8" "c0035fd6")  # stp; ldp; ret
    >>> plan_cut("arm64", code, 0, 0, Return(0), target="t", location="f", style=one_word)
    Traceback (most recent call last):
    ...
    knockout.errors.UnsafeCut: a return at f is 2 instructions ('mov x0, #0; ret': 8 bytes) but \
this target writes one 4-byte instruction per cut (a task preempted between two would run half \
of it); return early with one instruction instead: --skip-call VALUE on the call whose result \
to replace, --force-branch on a test that leads to an early return, or --return-at an epilogue \
(a void function's is one branch)
    """
    size = len(new)
    if style.max_len is None or size <= style.max_len:
        return
    if isinstance(intent, Return):
        words = "; ".join(i.text for i in disasm(new, fn.arch, start))
        raise UnsafeCut(
            f"a return at {fn.where(start)} is {count} instructions ('{words}': {size} bytes) "
            "but this target writes one "
            f"{style.max_len}-byte instruction per cut (a task preempted between two would run "
            "half of it); return early with one instruction instead: --skip-call VALUE on the "
            "call whose result to replace, --force-branch on a test that leads to an early "
            "return, or --return-at an epilogue (a void function's is one branch)"
        )
    raise UnsafeCut(
        f"the cut at {fn.where(start)} covers {size} bytes ({count} instructions) but this "
        f"target writes at most {style.max_len} bytes per cut (a task preempted between two "
        "would run half of it); cut one instruction (--set, --skip, --skip-call, "
        "--force-branch, or --return-at of a void function)"
    )


def _plan(fn: _Function, address: int, intent: Intent, style: CodeStyle, target: str) -> Cut:
    a = fn.arch
    region = _region(fn, address, intent, style)
    jump_len = a.stub_jump_len if style.jump_stub else None
    if jump_len is not None:
        _widen_for_stub(fn, region, intent, jump_len)
    _check_safe(fn, region, a.entry_prefix(fn.insns, style))
    _check_falls_off(fn, region, intent)
    covered = fn.insns[region.first : region.first + region.count]
    replaced = covered[: region.replaced]
    displaced = covered[region.replaced :]
    room = sum(i.size for i in replaced)
    if len(region.replacement) > room:
        raise BadInput(f"the replacement needs {len(region.replacement)} bytes but has {room}")
    old = b"".join(i.data for i in covered)
    new = (
        region.replacement
        + a.nops(room - len(region.replacement))
        + b"".join(i.data for i in displaced)
    )
    start = covered[0].address
    _check_length(fn, start, new, len(covered), style, intent)
    if jump_len is not None:
        _check_returns_outside_jump(fn, covered, jump_len)
        _check_stub_branches(fn, start, new, start + len(old))
        _check_stub(fn, start, new)
    return Cut(
        target=target,
        arch=a,
        address=start,
        location=fn.where(start),
        old=old,
        new=new,
        intent=intent,
        instructions=len(covered),
    )


def stub_code(cut: Cut, stub_address: int) -> bytes:
    """The stub for a jump-stub cut: ``cut.new`` moved to ``stub_address``, then a jump back.

    The kernel target writes this at ``stub_address`` (in module memory)
    before it writes a jump to ``stub_address`` over ``cut.address``.
    """
    body = cut.arch.relocate(disasm(cut.new, cut.arch, cut.address), stub_address)
    back = cut.arch.jump(stub_address + len(body), cut.end)
    return body + back.data


class _Resolves(Protocol):
    def resolve(self, spec: str) -> Location: ...


class _Reads(Protocol):
    """What :func:`plan_at` needs from a target (a subset of :class:`knockout.targets.Target`)."""

    arch: Arch

    @property
    def description(self) -> str: ...

    def read(self, address: int, size: int) -> bytes: ...

    def symbols(self) -> _Resolves: ...

    def code_style(self) -> CodeStyle: ...


def _read_unsized(target: _Reads, start: int) -> bytes:
    """Up to :data:`MAX_UNSIZED` bytes from ``start``, page by page, until a read fails."""
    out = bytearray()
    at = start
    chunk = _PAGE - at % _PAGE
    while len(out) < MAX_UNSIZED:
        chunk = min(chunk, MAX_UNSIZED - len(out))
        try:
            out += target.read(at, chunk)
        except KnockoutError:
            if chunk > 16:
                chunk //= 2  # a short mapping or file: try less
                continue
            if not out:
                raise
            break
        at += chunk
        chunk = _PAGE
    return bytes(out)


def plan_at(target: _Reads, spec: str, intent: Intent) -> Cut:
    """Resolve ``spec`` (``SYMBOL``, ``SYMBOL+0x150``, ``0xADDR``...) in ``target``; plan the cut.

    Reads the whole function the address lies in (up to 64 KiB when its size
    is unknown, stopping at the first undecodable byte), so boundaries and
    branches are checked against the real code, written the way the target
    writes cuts (its ``code_style()``).
    """
    loc = target.symbols().resolve(spec)
    symbol = loc.symbol
    if symbol is None:
        start, size, name = loc.address, 0, f"{loc.address:#x}"
    else:
        start, size, name = symbol.address, symbol.size, symbol.name
    code = target.read(start, size) if size else _read_unsized(target, start)
    return plan_cut(
        target.arch,
        code,
        start,
        loc.address,
        intent,
        target=target.description,
        location=name,
        style=target.code_style(),
    )
