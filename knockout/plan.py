"""Planning a cut: from an intent and the real bytes of a function to a :class:`Cut`.

Nothing here writes anywhere.  :func:`plan_cut` disassembles the function
from its start, so every refusal is about the code as it really is: an
offset inside an instruction, a cut past the function's end, a replacement
that does not fit, a branch into the middle of the cut, ftrace's entry nop.

>>> from knockout.cuts import SetReg
>>> code = bytes.fromhex("1c0080d2" "1c a4 41 f9".replace(" ", "") + "c0035fd6")
>>> c = plan_cut("arm64", code, 0x1000, 0x1004, SetReg("x28", 0), target="t", location="f")
>>> c.location, c.old.hex(), c.new.hex(), c.instructions
('f+0x4', '1ca441f9', '1c0080d2', 1)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from knockout.arch import Arch, aarch64, get_arch, x86_64
from knockout.asm import Encoded, Insn, disasm
from knockout.cuts import Cut, Identity, Intent, RawBytes, Return, SetReg, Skip, SkipCall
from knockout.errors import BadInput, KnockoutError, UnsafeCut
from knockout.symbols import Location

__all__ = ["CodeStyle", "plan_at", "plan_cut", "stub_code"]

#: the length of the ``jmp rel32`` the kernel target writes on x86_64
JMP_REL32_LEN = 5
#: how far :func:`plan_at` reads a function whose size the symbol table does not know
MAX_UNSIZED = 64 * 1024
_PAGE = 4096


@dataclass(frozen=True)
class CodeStyle:
    """How the target writes a cut; the default writes ``new`` over ``old`` in place.

    ``kernel_x86_jmp_stub``: the kernel target on x86_64 writes a 5-byte
    ``jmp rel32`` to a stub holding ``new`` (see :func:`stub_code`), so the
    cut covers at least 5 bytes and the instructions it displaces must run
    correctly from the stub.  ``return_thunk``: the address of
    ``__x86_return_thunk`` when the function returns through it.  The kernel
    target on x86_64 wants ``CodeStyle(kernel_x86_jmp_stub=True,
    return_thunk=...)``.
    """

    kernel_x86_jmp_stub: bool = False
    return_thunk: int | None = None
    #: x86_64 kernel code: a ``call rel32`` at the entry (after ``endbr64``) is
    #: ftrace's ``__fentry__`` call site and is never cut (its 5-byte nop never
    #: is, in any code); None means "kernel code iff kernel_x86_jmp_stub"
    ftrace_entry: bool | None = None

    @property
    def entry_call_is_ftrace(self) -> bool:
        """Whether a ``call`` at the entry belongs to ftrace (see :attr:`ftrace_entry`)."""
        return self.kernel_x86_jmp_stub if self.ftrace_entry is None else self.ftrace_entry


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


def _join(code: list[Encoded]) -> bytes:
    return b"".join(e.data for e in code)


def _text(code: list[Encoded]) -> str:
    return "; ".join(e.text for e in code)


def _entry_prefix(fn: _Function, style: CodeStyle) -> tuple[int, str | None]:
    """How many entry instructions no cut may touch, and the PAC key of a kept ``pac*sp``.

    x86_64: ``endbr64`` (the IBT landing pad) and ftrace's 5-byte nop (or,
    in kernel code, ``call __fentry__``).  aarch64: ``bti``, ftrace's ``mov x9, x30`` + its
    ``nop``/``bl``, and ``paciasp``/``pacibsp`` (a landing pad too).
    """
    insns, i, pac = fn.insns, 0, None
    if fn.arch.name == "x86_64":
        if i < len(insns) and insns[i].data == x86_64.ENDBR64:
            i += 1
        at_entry = insns[i] if i < len(insns) else None
        if at_entry is not None and (
            at_entry.data == x86_64.FENTRY_NOP
            or (style.entry_call_is_ftrace and at_entry.data[:1] == b"\xe8" and at_entry.size == 5)
        ):
            i += 1
        return i, None
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
    return i, pac


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
    prefix, pac = _entry_prefix(fn, style)
    first = prefix if prefix < len(fn.insns) else len(fn.insns) - 1
    at = fn.insns[first].address
    if not fn.start <= address <= at:
        raise BadInput(
            f"a return cut goes at the entry of {fn.name} (it lands at {fn.where(at)}); "
            f"to cut at {fn.where(address)} use --set, --skip, --skip-call or --bytes"
        )
    if fn.arch.name == "x86_64":
        code = x86_64.encode_return(intent.value, at, style.return_thunk)
    else:
        code = aarch64.encode_return(intent.value, pac=pac)
    data = _join(code)
    count = _cover(fn, first, len(data), f"'{_text(code)}'")
    return _Region(first, count, data, count)


def _fit(fn: _Function, insn: Insn, code: list[Encoded], hint: str) -> bytes:
    data = _join(code)
    if len(data) > insn.size:
        raise BadInput(
            f"{_text(code)} needs {len(data)} bytes but the instruction at "
            f"{fn.where(insn.address)} has {insn.size}; {hint}"
        )
    return data


def _set_bytes(fn: _Function, insn: Insn, intent: SetReg) -> bytes:
    if fn.arch.name == "aarch64":
        return _join(aarch64.mov_imm(intent.reg, intent.value, single=True))
    code = x86_64.mov_imm(intent.reg, intent.value)
    hint = (
        "pick a value that fits in 32 bits (a 5-7 byte mov) or cut a longer instruction"
        if len(_join(code)) == 10
        else "cut a longer instruction, or use --bytes"
    )
    return _fit(fn, insn, code, hint)


def _skip_call_bytes(fn: _Function, insn: Insn, intent: SkipCall) -> bytes:
    isa = x86_64 if fn.arch.name == "x86_64" else aarch64
    if not isa.is_call(insn):
        raise BadInput(
            f"the instruction at {fn.where(insn.address)} is '{insn.text}', not a call; "
            "use --skip or --set there, or give the call's offset"
        )
    code = isa.encode_skip_call(intent.value)
    if insn.size >= 5:
        hint = "use a value in -128..0xffffffff"
    elif insn.size >= 3:
        hint = "use 0 or a value in -128..-1"
    else:
        hint = "only 0 fits (xor eax, eax)"
    return _fit(fn, insn, code, hint)


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
    """The instructions ``intent`` replaces at ``address`` and what replaces them."""
    if isinstance(intent, Return):
        return _return_region(fn, address, intent, style)
    first = fn.index_at(address)
    insn = fn.insns[first]
    if isinstance(intent, RawBytes):
        if not intent.data:
            raise BadInput("--bytes needs at least one byte; write e.g. --bytes 90")
        return _raw_region(fn, first, intent.data)
    if isinstance(intent, SetReg):
        data = _set_bytes(fn, insn, intent)
    elif isinstance(intent, SkipCall):
        data = _skip_call_bytes(fn, insn, intent)
    elif isinstance(intent, Skip):
        data = b""
    elif isinstance(intent, Identity):
        data = insn.data
    else:
        raise BadInput(f"unknown intent {intent!r}")
    return _Region(first, 1, data, 1)


def _nops(arch: Arch, n: int) -> bytes:
    return x86_64.nops(n) if arch.name == "x86_64" else aarch64.nops(n)


def _widen_for_stub(fn: _Function, region: _Region, intent: Intent) -> None:
    """Grow ``region`` to the 5 bytes of a ``jmp rel32``; displaced code must be movable."""
    size = sum(i.size for i in fn.insns[region.first : region.first + region.count])
    if size >= JMP_REL32_LEN:
        return
    extra = _cover(fn, region.first + region.count, JMP_REL32_LEN - size, "the jmp to the stub")
    region.count += extra
    if isinstance(intent, Return):
        region.replaced = region.count  # dead after the return: padded, not copied
        return
    for insn in fn.insns[region.first + region.replaced : region.first + region.count]:
        if x86_64.is_call(insn):
            raise UnsafeCut(_stub_call_refusal(fn, fn.insns[region.first].address, insn))
        why = x86_64.is_relative(insn)
        if why is not None:
            raise UnsafeCut(
                f"the 5-byte jmp to the stub at {fn.where(fn.insns[region.first].address)} "
                f"also displaces {fn.where(insn.address)}: {why}, so its copy in the stub "
                f"would go wrong; cut {fn.where(insn.address)} itself or use a kprobe"
            )


def _stub_call_refusal(fn: _Function, address: int, call: Insn) -> str:
    return (
        f"the stub for {fn.where(address)} would hold '{call.text}' (at {fn.where(call.address)}): "
        "its return address would point into the stub, which is reused after the revert; "
        "cut the call itself (--skip-call), cut elsewhere, or use a kprobe"
    )


#: what the kernel module refuses in a stub besides calls: BUG/WARN and traps are
#: looked up by address, and an INT3 there is nobody's breakpoint
_STUB_TRAPS = {"int3", "int", "int1", "into", "ud2"}


def _check_stub(fn: _Function, address: int, new: bytes) -> None:
    """The stub's code must move (only ``jmp rel32`` is re-aimed) and hold no call or trap.

    A call in a stub would leave a return address pointing into the stub,
    which the kernel module recycles after the cut is reverted; the module
    refuses one (and INT3, INT n, UD2), and this refuses first, saying why.
    Indirect jumps anywhere in the function are refused as x86 optprobes do:
    a jump table may land inside the covered range.
    """
    for insn in disasm(new, fn.arch, address):
        if x86_64.is_call(insn):
            raise UnsafeCut(_stub_call_refusal(fn, address, insn))
        if insn.mnemonic.split()[-1] in _STUB_TRAPS:
            raise UnsafeCut(
                f"the stub for {fn.where(address)} would hold '{insn.text}' (at "
                f"{fn.where(insn.address)}), a trap the kernel finds by address; "
                "cut without it or use a kprobe"
            )
        why = x86_64.is_relative(insn)
        movable = insn.data[:1] == b"\xe9" and insn.size == JMP_REL32_LEN
        if why is not None and not movable:
            raise UnsafeCut(
                f"the stub for {fn.where(address)} would hold '{insn.text}' ({why}); "
                "replace that instruction with the cut or use a kprobe"
            )
    for insn in fn.insns:
        if x86_64.is_indirect_jump(insn):
            raise UnsafeCut(
                f"{fn.where(insn.address)} is an indirect jump ('{insn.text}'), which may "
                f"land inside a jmp-to-stub cut; use a kprobe for {fn.name}"
            )


#: instructions after which execution never falls through
_EXITS = {"ret", "jmp", "b", "br", "retaa", "retab", "braa", "brab", "braaz", "brabz", "ud2"}


def _check_falls_off(fn: _Function, region: _Region, intent: Intent) -> None:
    """Refuse replacing the function's last exit with code that falls through past its end."""
    if not isinstance(intent, Skip | SetReg | SkipCall):
        return
    last = fn.insns[region.first]
    is_last = region.first == len(fn.insns) - 1 or last.end >= fn.end
    if is_last and last.mnemonic.split()[-1] in _EXITS:
        raise UnsafeCut(
            f"{fn.where(last.address)} is '{last.text}', the last instruction of {fn.name}; "
            "replacing it would run past the end into whatever follows; cut an earlier "
            "instruction or use --return"
        )


def _check_safe(fn: _Function, region: _Region, prefix: int) -> None:
    """Refuse cuts over the entry prefix, over a breakpoint, or with a branch into the middle."""
    covered = fn.insns[region.first : region.first + region.count]
    start, end = covered[0].address, covered[-1].end
    if region.first < prefix:
        owner = fn.insns[region.first]
        later = fn.where(fn.insns[prefix].address) if prefix < len(fn.insns) else "a later offset"
        raise UnsafeCut(
            f"{fn.where(owner.address)} is '{owner.text}', which the entry needs "
            f"(IBT/BTI landing pad, pointer authentication or ftrace's call site); cut at {later}"
        )
    for k, insn in enumerate(covered):
        after_exit = k > 0 and covered[k - 1].mnemonic in ("ret", "jmp")
        if insn.data == x86_64.INT3 and fn.arch.name == "x86_64" and not after_exit:
            raise UnsafeCut(
                f"{fn.where(insn.address)} holds an int3 (a breakpoint or kprobe); remove it "
                "and plan the cut again"
            )
    isa = x86_64 if fn.arch.name == "x86_64" else aarch64
    for insn in fn.insns:
        target = isa.branch_target(insn)
        if target is not None and start < target < end:
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
    a = get_arch(arch)
    style = style or CodeStyle()
    fn = _Function(a, bytes(code), code_address, location)
    if not fn.insns:
        raise UnsafeCut(f"cannot decode {location} at its start; check the arch and the address")
    region = _region(fn, address, intent, style)
    stub = style.kernel_x86_jmp_stub and a.name == "x86_64"
    if stub:
        _widen_for_stub(fn, region, intent)
    prefix, _pac = _entry_prefix(fn, style)
    _check_safe(fn, region, prefix)
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
        + _nops(a, room - len(region.replacement))
        + b"".join(i.data for i in displaced)
    )
    start = covered[0].address
    if stub:
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
    """The x86_64 stub for a jmp-stub cut: ``cut.new`` moved to ``stub_address``, then a jmp back.

    The kernel target writes this at ``stub_address`` (in module memory)
    before it writes ``jmp stub_address`` over ``cut.address``.
    """
    if cut.arch.name != "x86_64":
        raise BadInput(f"jmp stubs are for x86_64 only, not {cut.arch.name}")
    body = x86_64.relocate(disasm(cut.new, cut.arch, cut.address), stub_address)
    back = x86_64.jmp_rel32(stub_address + len(body), cut.end)
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


def _code_style(target: object) -> CodeStyle:
    method = getattr(target, "code_style", None)
    style = method() if callable(method) else None
    return style if isinstance(style, CodeStyle) else CodeStyle()


def plan_at(target: _Reads, spec: str, intent: Intent) -> Cut:
    """Resolve ``spec`` (``SYMBOL``, ``SYMBOL+0x150``, ``0xADDR``...) in ``target``; plan the cut.

    Reads the whole function the address lies in (up to 64 KiB when its size
    is unknown, stopping at the first undecodable byte), so boundaries and
    branches are checked against the real code.  The target may offer
    ``code_style() -> CodeStyle``; without it the cut is written in place.
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
        style=_code_style(target),
    )
