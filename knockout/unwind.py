"""Call-frame information: the stack state at each instruction of a function.

A "return at P" cut jumps from P to an epilogue.  It is right only where
the stack state at P -- how to find the caller's stack pointer (the CFA)
and where each saved register is -- equals the epilogue's: the epilogue
then restores what the prologue saved and returns to the caller.  This
module reads that state from the tables compilers and the kernel build
write for unwinders:

* **DWARF CFI**: ``.eh_frame`` (every gcc/clang binary) or ``.debug_frame``
  (debug info; Debian's debug vmlinux has it), the CFA rule and each saved
  register's rule at every instruction.  Parsed here (pyelftools'
  general parser applies every relocation of a vmlinux first: minutes).
* **x86 ORC** (``.orc_unwind_ip``/``.orc_unwind``, written by objtool for
  the kernel): the CFA (``sp_reg`` + ``sp_offset``) and the frame pointer
  only.  A 6-byte entry holds ``sp_offset``, ``bp_offset`` (s16 each),
  ``sp_reg``/``bp_reg`` (4 bits each) and the type bits, whose layout
  changed in upstream commits ffb1b4a41016 ("x86/unwind/orc: Add 'signal'
  field to ORC metadata", in v6.3) and fb799447ae29 ("x86,objtool: Split
  UNWIND_HINT_EMPTY in two", in v6.4): entries are compared whole, so
  the layout of the type bits never needs decoding.

:func:`stack_states` gives one function's states from whichever tables
the ELF file has; where it has both CFI and ORC (a debug vmlinux) each
state holds both, so two states are equal only if both tables agree.

>>> state = FrameState("rsp", 16, (("ra", "cfa-8"), ("rbx", "cfa-16")))
>>> str(state), stack_gap(state, FrameState("rsp", 8, state.saved), "rsp")
('CFA rsp+16; ra at cfa-8, rbx at cfa-16', 8)
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from knockout.arch import Arch
from knockout.elf import ElfImage, debug_file_for, open_elf
from knockout.errors import BadInput, NotFound

__all__ = [
    "TABLES",
    "CallFrames",
    "Fde",
    "FrameState",
    "OrcEntry",
    "OrcTable",
    "StackStates",
    "call_frames",
    "fde_rows",
    "orc_table",
    "stack_gap",
    "stack_states",
]


@dataclass(frozen=True)
class FrameState:
    """The stack state at one instruction: the CFA rule and the saved registers' rules.

    The CFA is ``cfa_reg + cfa_offset`` (``rsp+56``), or the DWARF
    expression ``cfa_expr`` (hex); ``saved`` maps registers (canonical
    names, ``ra`` for x86's return-address column) to their rules, sorted:
    ``cfa-56`` (saved at CFA-56), ``=cfa+8`` (its value is CFA+8), ``=REG``
    (kept in another register), ``expr:HEX``, ``undefined``; aarch64's
    return-address signing state is the pseudo register ``ra_sign_state``.
    ``orc`` is the ORC entry in effect, where the file has ORC too.
    """

    cfa_reg: str | None
    cfa_offset: int = 0
    saved: tuple[tuple[str, str], ...] = ()
    cfa_expr: str | None = None
    orc: OrcEntry | None = None

    @property
    def cfa(self) -> str:
        """The CFA rule as text: ``rsp+56`` or ``expr:HEX``."""
        if self.cfa_reg is None:
            return f"expr:{self.cfa_expr}"
        return f"{self.cfa_reg}{self.cfa_offset:+d}"

    def __str__(self) -> str:
        text = f"CFA {self.cfa}"
        if self.saved:
            text += "; " + ", ".join(f"{reg} at {rule}" for reg, rule in self.saved)
        if self.orc is not None:
            text += f"; ORC {self.orc}"
        return text


def stack_gap(at: FrameState, landing: FrameState, stack_pointer: str) -> int | None:
    """How many bytes of stack ``at`` holds beyond ``landing``, where that is all they differ by.

    0 for equal states; ``N > 0`` where the CFA is the stack pointer plus N
    more bytes at ``at`` and every saved register's rule is the same (an
    ``add sp, N`` makes the states equal); None otherwise.  ORC entries,
    where present, must say the same.
    """
    if at.saved != landing.saved or at.cfa_reg != landing.cfa_reg or at.cfa_reg is None:
        return None if at != landing else 0
    gap = at.cfa_offset - landing.cfa_offset
    if gap == 0:
        return 0 if at.orc == landing.orc else None
    if gap < 0 or at.cfa_reg != stack_pointer:
        return None
    a, b = at.orc, landing.orc
    if (a is None) != (b is None):
        return None
    if a is not None and b is not None:
        if replace(a, sp_offset=b.sp_offset) != b or a.sp_reg != ORC_REG_SP:
            return None
        if a.sp_offset - b.sp_offset != gap:
            return None
    return gap


# -- reading the bytes ------------------------------------------------------------------


class _Reader:
    """A cursor over a CFI section: fixed-size, LEB128 and pointer-encoded values."""

    def __init__(self, data: bytes, pos: int, little: bool, address: int) -> None:
        self.data, self.pos, self.address = data, pos, address
        self.order = "<" if little else ">"

    def fixed(self, size: int, signed: bool = False) -> int:
        code = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
        form = self.order + (code if signed else code.upper())
        (value,) = struct.unpack_from(form, self.data, self.pos)
        self.pos += size
        return int(value)

    def uleb(self) -> int:
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result

    def sleb(self) -> int:
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result - (1 << shift) if byte & 0x40 else result

    def block(self) -> bytes:
        size = self.uleb()
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def string(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        out = self.data[self.pos : end]
        self.pos = end + 1
        return out

    def encoded(self, encoding: int, address_size: int) -> int:
        """A ``DW_EH_PE_*`` encoded pointer (absolute or pc-relative)."""
        at = self.address + self.pos
        form = encoding & 0x0F
        if form == 0x00:
            value = self.fixed(address_size)
        elif form == 0x01:
            value = self.uleb()
        elif form == 0x09:
            value = self.sleb()
        else:
            size, signed = {0x02: (2, False), 0x03: (4, False), 0x04: (8, False)}.get(
                form, {0x0A: (2, True), 0x0B: (4, True), 0x0C: (8, True)}.get(form, (0, False))
            )
            if not size:
                raise NotFound(f"unknown pointer encoding {encoding:#x} in call-frame information")
            value = self.fixed(size, signed)
        application = encoding & 0x70
        if application == 0x10:  # DW_EH_PE_pcrel
            value += at
        elif application not in (0x00,):
            raise NotFound(f"pointer encoding {encoding:#x} (not absolute or pc-relative)")
        return value & ((1 << (8 * address_size)) - 1)


@dataclass(frozen=True)
class _Cie:
    code_align: int
    data_align: int
    return_column: int
    fde_encoding: int
    augmented: bool  # 'z': FDEs carry augmentation data
    initial: bytes
    address_size: int


@dataclass(frozen=True)
class Fde:
    """One frame description entry: the code range ``[start, end)`` and its CFA program."""

    start: int
    end: int
    cie: _Cie = field(repr=False)
    program: bytes = field(repr=False)


class CallFrames:
    """The FDEs of one CFI section (``.eh_frame`` or ``.debug_frame``), indexed by address.

    ``address`` is where the section is (link-time), for pc-relative pointers.
    """

    def __init__(
        self, data: bytes, address: int, *, eh: bool, little: bool = True, address_size: int = 8
    ) -> None:
        self.eh = eh
        self.name = ".eh_frame" if eh else ".debug_frame"
        self._little = little
        self._address_size = address_size
        fdes = sorted(self._entries(data, address), key=lambda f: f.start)
        self._fdes = [f for f in fdes if f.end > f.start]
        self._starts = [f.start for f in self._fdes]

    def __len__(self) -> int:
        return len(self._fdes)

    def fde_at(self, address: int) -> Fde | None:
        """The FDE whose range holds link-time ``address``, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._fdes[i].end:
            return self._fdes[i]
        return None

    def _entries(self, data: bytes, address: int) -> Iterator[Fde]:
        cies: dict[int, _Cie] = {}
        pos = 0
        while pos + 4 <= len(data):
            r = _Reader(data, pos, self._little, address)
            length = r.fixed(4)
            if length == 0:
                if self.eh:
                    break  # the terminator
                pos = r.pos
                continue
            offset_size = 4
            if length == 0xFFFFFFFF:
                length, offset_size = r.fixed(8), 8
            body = r.pos
            end = body + length
            id_at = r.pos
            cie_id = r.fixed(offset_size)
            is_cie = cie_id == 0 if self.eh else cie_id == (1 << (8 * offset_size)) - 1
            if is_cie:
                cies[pos] = self._cie(r, end)
            else:
                cie_at = id_at - cie_id if self.eh else cie_id
                cie = cies.get(cie_at) or self._cie_at(data, address, cie_at)
                if cie is not None:
                    cies[cie_at] = cie
                    yield self._fde(r, end, cie)
            pos = end

    def _cie_at(self, data: bytes, address: int, at: int) -> _Cie | None:
        """A CIE that follows the FDEs using it (allowed in .debug_frame)."""
        if not 0 <= at < len(data):
            return None
        r = _Reader(data, at, self._little, address)
        length = r.fixed(4)
        offset_size = 4
        if length == 0xFFFFFFFF:
            length, offset_size = r.fixed(8), 8
        end = r.pos + length
        r.fixed(offset_size)
        return self._cie(r, end)

    def _cie(self, r: _Reader, end: int) -> _Cie:
        version = r.fixed(1)
        augmentation = r.string()
        address_size = self._address_size
        if version >= 4:
            address_size = r.fixed(1)
            r.fixed(1)  # segment selector size
        code_align = r.uleb()
        data_align = r.sleb()
        return_column = r.fixed(1) if version == 1 else r.uleb()
        fde_encoding = 0
        augmented = augmentation.startswith(b"z")
        if augmented:
            aug_end = r.uleb()
            aug_end += r.pos
            for letter in augmentation[1:]:
                if letter == ord("R"):
                    fde_encoding = r.fixed(1)
                elif letter == ord("P"):
                    encoding = r.fixed(1)
                    r.encoded(encoding, address_size)
                elif letter == ord("L"):
                    r.fixed(1)
            r.pos = aug_end
        return _Cie(
            code_align,
            data_align,
            return_column,
            fde_encoding,
            augmented,
            r.data[r.pos : end],
            address_size,
        )

    def _fde(self, r: _Reader, end: int, cie: _Cie) -> Fde:
        if self.eh:
            start = r.encoded(cie.fde_encoding, cie.address_size)
            size = r.encoded(cie.fde_encoding & 0x0F, cie.address_size)
        else:
            start = r.fixed(cie.address_size)
            size = r.fixed(cie.address_size)
        if cie.augmented:
            r.pos += r.uleb()
        return Fde(start, start + size, cie, r.data[r.pos : end])


# -- running a CFA program --------------------------------------------------------------

#: aarch64's DW_CFA_AARCH64_negate_ra_state (SPARC's DW_CFA_GNU_window_save: not an ISA here)
_NEGATE_RA_STATE = 0x2D


@dataclass
class _Machine:
    """The CFA program's registers: the CFA rule and each register's rule."""

    arch: Arch
    cie: _Cie
    cfa_reg: int = -1
    cfa_offset: int = 0
    cfa_expr: bytes | None = None
    rules: dict[str, str] = field(default_factory=dict)
    initial: dict[str, str] = field(default_factory=dict)
    stack: list[tuple[int, int, bytes | None, dict[str, str]]] = field(default_factory=list)

    def name(self, number: int) -> str:
        name = self.arch.dwarf_register(number)
        return "ra" if number == self.cie.return_column and name.startswith("dwarf") else name

    def state(self) -> FrameState:
        saved = tuple(sorted(self.rules.items()))
        if self.cfa_expr is not None:
            return FrameState(None, 0, saved, self.cfa_expr.hex())
        return FrameState(self.name(self.cfa_reg), self.cfa_offset, saved)

    def set_rule(self, number: int, rule: str | None) -> None:
        name = self.name(number)
        if rule is None:
            self.rules.pop(name, None)
        else:
            self.rules[name] = rule

    def restore(self, number: int) -> None:
        name = self.name(number)
        if name in self.initial:
            self.rules[name] = self.initial[name]
        else:
            self.rules.pop(name, None)


def _step(m: _Machine, r: _Reader, op: int, loc: int) -> int:
    """Run one CFA instruction at ``r``; returns the new location."""
    cie = m.cie
    high, low = op & 0xC0, op & 0x3F
    if high == 0x40:  # DW_CFA_advance_loc
        return loc + low * cie.code_align
    if high == 0x80:  # DW_CFA_offset
        m.set_rule(low, f"cfa{r.uleb() * cie.data_align:+d}")
    elif high == 0xC0:  # DW_CFA_restore
        m.restore(low)
    elif op == 0x01:  # DW_CFA_set_loc (compilers emit advances; an absolute address only)
        if cie.fde_encoding & 0x70:
            raise NotFound("DW_CFA_set_loc with a relative address; the table cannot be read")
        return r.encoded(cie.fde_encoding, cie.address_size)
    elif op in (0x02, 0x03, 0x04):  # DW_CFA_advance_loc1/2/4
        return loc + r.fixed({0x02: 1, 0x03: 2, 0x04: 4}[op]) * cie.code_align
    else:
        _rule_op(m, r, op)
    return loc


def _rule_op(m: _Machine, r: _Reader, op: int) -> None:
    """The CFA instructions that change rules, not the location."""
    da = m.cie.data_align
    if op == 0x05:  # DW_CFA_offset_extended
        reg = r.uleb()
        m.set_rule(reg, f"cfa{r.uleb() * da:+d}")
    elif op == 0x06:  # DW_CFA_restore_extended
        m.restore(r.uleb())
    elif op == 0x07:  # DW_CFA_undefined
        m.set_rule(r.uleb(), "undefined")
    elif op == 0x08:  # DW_CFA_same_value
        m.set_rule(r.uleb(), None)
    elif op == 0x09:  # DW_CFA_register
        reg = r.uleb()
        m.set_rule(reg, f"={m.name(r.uleb())}")
    elif op == 0x0A:  # DW_CFA_remember_state
        m.stack.append((m.cfa_reg, m.cfa_offset, m.cfa_expr, dict(m.rules)))
    elif op == 0x0B:  # DW_CFA_restore_state
        if m.stack:
            m.cfa_reg, m.cfa_offset, m.cfa_expr, m.rules = m.stack.pop()
    elif op in (0x0C, 0x12):  # DW_CFA_def_cfa, DW_CFA_def_cfa_sf
        m.cfa_reg = r.uleb()
        m.cfa_offset = r.uleb() if op == 0x0C else r.sleb() * da
        m.cfa_expr = None
    elif op == 0x0D:  # DW_CFA_def_cfa_register
        m.cfa_reg, m.cfa_expr = r.uleb(), None
    elif op == 0x0E:  # DW_CFA_def_cfa_offset
        m.cfa_offset = r.uleb()
    elif op == 0x13:  # DW_CFA_def_cfa_offset_sf
        m.cfa_offset = r.sleb() * da
    elif op == 0x0F:  # DW_CFA_def_cfa_expression
        m.cfa_expr = r.block()
    elif op in (0x10, 0x16):  # DW_CFA_expression, DW_CFA_val_expression
        reg = r.uleb()
        m.set_rule(reg, f"{'' if op == 0x10 else '='}expr:{r.block().hex()}")
    elif op == 0x11:  # DW_CFA_offset_extended_sf
        reg = r.uleb()
        m.set_rule(reg, f"cfa{r.sleb() * da:+d}")
    elif op in (0x14, 0x15):  # DW_CFA_val_offset, DW_CFA_val_offset_sf
        reg = r.uleb()
        m.set_rule(reg, f"=cfa{(r.uleb() if op == 0x14 else r.sleb()) * da:+d}")
    elif op == 0x2E:  # DW_CFA_GNU_args_size
        r.uleb()
    elif op == 0x2F:  # DW_CFA_GNU_negative_offset_extended
        reg = r.uleb()
        m.set_rule(reg, f"cfa{-r.uleb() * da:+d}")
    elif op == _NEGATE_RA_STATE:
        signed = m.rules.pop("ra_sign_state", None)
        if signed is None:
            m.rules["ra_sign_state"] = "signed"
    elif op != 0x00:  # DW_CFA_nop
        raise NotFound(f"unknown call-frame instruction {op:#x}; the table cannot be read")


def _run(program: bytes, m: _Machine, loc: int, rows: list[tuple[int, FrameState]] | None) -> int:
    r = _Reader(program, 0, True, 0)
    while r.pos < len(program):
        op = program[r.pos]
        r.pos += 1
        new = _step(m, r, op, loc)
        if new != loc and rows is not None:
            _emit(rows, loc, m.state())
        loc = new
    return loc


def _emit(rows: list[tuple[int, FrameState]], loc: int, state: FrameState) -> None:
    if rows and rows[-1][0] == loc:
        rows[-1] = (loc, state)
    elif not rows or rows[-1][1] != state:
        rows.append((loc, state))


def fde_rows(fde: Fde, arch: Arch, little: bool = True) -> list[tuple[int, FrameState]]:
    """``(address, state)`` from ``fde.start`` on: each state holds up to the next address."""
    m = _Machine(arch, fde.cie)
    _run(fde.cie.initial, m, fde.start, None)
    m.initial = dict(m.rules)
    rows: list[tuple[int, FrameState]] = []
    loc = _run(fde.program, m, fde.start, rows)
    _emit(rows, loc, m.state())
    return rows


# -- ORC ------------------------------------------------------------------------------------

_ORC_REG = {0: "undefined", 1: "prevsp", 2: "dx", 3: "di", 4: "bp", 5: "sp", 6: "r10", 7: "r13"}
_ORC_REG.update({8: "bp(indirect)", 9: "sp(indirect)"})
#: ORC_REG_SP: the CFA is sp + sp_offset (an ordinary frame)
ORC_REG_SP = 5
_ORC_ENTRY = 6


@dataclass(frozen=True)
class OrcEntry:
    """One ORC entry: the CFA is ``sp_reg + sp_offset``, the caller's bp at ``bp_reg + bp_offset``.

    ``bits`` is the last byte as it is (type, end/signal: their layout
    moved between kernel versions).
    """

    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    bits: int

    def __str__(self) -> str:
        sp = f"{_ORC_REG.get(self.sp_reg, str(self.sp_reg))}{self.sp_offset:+d}"
        if self.bp_reg == 0:
            bp = "bp unchanged"
        else:
            bp = f"bp at {_ORC_REG.get(self.bp_reg, str(self.bp_reg))}{self.bp_offset:+d}"
        return f"{sp}, {bp}, bits {self.bits:#x}"


class OrcTable:
    """The kernel's ORC table: sorted instruction addresses, each with the entry from there on.

    ``ip_address`` is where ``.orc_unwind_ip`` is (each word is an offset
    from its own address to the instruction).
    """

    def __init__(self, ip_data: bytes, ip_address: int, entries: bytes) -> None:
        words = struct.unpack(f"<{len(ip_data) // 4}i", ip_data[: len(ip_data) // 4 * 4])
        ips = [ip_address + 4 * i + w for i, w in enumerate(words)]
        order = list(range(len(ips)))
        if any(a > b for a, b in itertools.pairwise(ips)):
            order.sort(key=ips.__getitem__)
        self._ips = [ips[i] for i in order]
        self._order = order
        self._entries = entries

    def __len__(self) -> int:
        return len(self._ips)

    def _entry(self, k: int) -> OrcEntry:
        sp, bp, regs, bits = struct.unpack_from("<hhBB", self._entries, _ORC_ENTRY * self._order[k])
        return OrcEntry(sp, bp, regs & 0x0F, regs >> 4, bits)

    def entry_at(self, address: int) -> OrcEntry | None:
        """The entry in effect at link-time ``address``, or None before the first."""
        k = bisect.bisect_right(self._ips, address) - 1
        return self._entry(k) if k >= 0 else None

    def boundaries(self, start: int, end: int) -> list[int]:
        """The addresses in ``[start, end)`` where an entry starts."""
        i = bisect.bisect_left(self._ips, start)
        j = bisect.bisect_left(self._ips, end)
        return self._ips[i:j]


# -- per file, per function -----------------------------------------------------------------


def _section(image: ElfImage, name: str) -> tuple[bytes, int] | None:
    section = image.elf.get_section_by_name(name)
    if section is None or section["sh_type"] == "SHT_NOBITS" or not section["sh_size"]:
        return None
    return section.data(), int(section["sh_addr"])


@functools.lru_cache(maxsize=16)
def _frames(path: str, mtime_ns: int, name: str) -> CallFrames | None:
    image = open_elf(path)
    found = _section(image, name)
    if found is None:
        return None
    data, address = found
    return CallFrames(
        data,
        address,
        eh=name == ".eh_frame",
        little=image.elf.little_endian,
        address_size=image.elf.elfclass // 8,
    )


def call_frames(path: str, section: str = ".eh_frame") -> CallFrames | None:
    """The FDEs of ``section`` (``.eh_frame`` or ``.debug_frame``) of ELF ``path``, or None.

    Cached per file and modification time.
    """
    real = os.path.realpath(path)
    return _frames(real, os.stat(real).st_mtime_ns, section)


@functools.lru_cache(maxsize=4)
def _orc(path: str, mtime_ns: int) -> OrcTable | None:
    image = open_elf(path)
    ips = _section(image, ".orc_unwind_ip")
    entries = _section(image, ".orc_unwind")
    if ips is None or entries is None:
        return None
    return OrcTable(ips[0], ips[1], entries[0])


def orc_table(path: str) -> OrcTable | None:
    """The ORC table of ELF ``path`` (a vmlinux), or None when it has none."""
    real = os.path.realpath(path)
    return _orc(real, os.stat(real).st_mtime_ns)


@dataclass(frozen=True)
class StackStates:
    """The stack state at each instruction of one function, at runtime addresses.

    ``source`` names the tables (``.eh_frame``, ``.debug_frame``,
    ``.debug_frame+ORC``, ``ORC``); ``complete`` is False where only ORC
    describes the function: the CFA and the frame pointer, no other saved
    register.
    """

    source: str
    start: int
    end: int
    rows: tuple[tuple[int, FrameState], ...]
    complete: bool
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(a for a, _ in self.rows))

    def at(self, address: int) -> FrameState | None:
        """The state in effect at runtime ``address``, or None outside the function's range."""
        if not self.start <= address < self.end:
            return None
        i = bisect.bisect_right(self._starts, address) - 1
        return self.rows[i][1] if i >= 0 else None


def _with_orc(
    rows: list[tuple[int, FrameState]], orc: OrcTable, start: int, end: int
) -> list[tuple[int, FrameState]]:
    """CFI rows merged with ORC's: each state holds both tables' word."""
    points = sorted({a for a, _ in rows} | set(orc.boundaries(start, end)) | {start})
    cfi_starts = [a for a, _ in rows]
    out: list[tuple[int, FrameState]] = []
    for address in points:
        i = bisect.bisect_right(cfi_starts, address) - 1
        base = rows[i][1] if i >= 0 else FrameState(None, 0, (), "unknown")
        state = FrameState(base.cfa_reg, base.cfa_offset, base.saved, base.cfa_expr)
        _emit(out, address, replace(state, orc=orc.entry_at(address)))
    return out


def _orc_only(
    orc: OrcTable, start: int, end: int, stack_pointer: str
) -> list[tuple[int, FrameState]]:
    """States from ORC alone: the CFA on the stack pointer; other bases stay ORC's names."""
    out: list[tuple[int, FrameState]] = []
    for address in sorted({start, *orc.boundaries(start, end)}):
        entry = orc.entry_at(address)
        if entry is None:
            continue
        base = stack_pointer if entry.sp_reg == ORC_REG_SP else f"orc:{entry.sp_reg}"
        _emit(out, address, FrameState(base, entry.sp_offset, (), None, entry))
    return out


def _shifted(rows: list[tuple[int, FrameState]], bias: int) -> tuple[tuple[int, FrameState], ...]:
    return tuple((a + bias, s) for a, s in rows)


def _cfi(path: str, address: int) -> tuple[CallFrames, Fde] | None:
    """The FDE for link-time ``address``: .eh_frame, .debug_frame, then the debug file's."""
    paths = [path]
    debug = debug_file_for(open_elf(path))
    if debug is not None:
        paths.append(debug)
    for candidate in paths:
        for section in (".eh_frame", ".debug_frame"):
            frames = call_frames(candidate, section)
            fde = frames.fde_at(address) if frames is not None else None
            if frames is not None and fde is not None:
                return frames, fde
    return None


#: the tables :func:`stack_states` reads: DWARF CFI and ORC
TABLES = ("cfi", "orc")


def stack_states(
    path: str,
    address: int,
    end: int,
    bias: int,
    arch: Arch,
    tables: Sequence[str] = TABLES,
) -> StackStates:
    """The stack states of the function at link-time ``[address, end)`` of ELF ``path``.

    ``bias`` shifts link-time to runtime addresses (a PIE's load base, the
    kernel's KASLR offset); ``tables`` limits what is read (``("orc",)``:
    what a kernel without debug CFI offers).  Raises :class:`NotFound`
    saying which tables are missing.
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise BadInput(f"unknown unwind tables {unknown}; choose among {', '.join(TABLES)}")
    found = _cfi(path, address) if "cfi" in tables else None
    orc = orc_table(path) if "orc" in tables else None
    if found is not None:
        frames, fde = found
        rows = fde_rows(fde, arch)
        source = frames.name
        if orc is not None:
            rows = _with_orc(rows, orc, fde.start, fde.end)
            source += "+ORC"
        return StackStates(source, fde.start + bias, fde.end + bias, _shifted(rows, bias), True)
    if orc is not None:
        rows = _orc_only(orc, address, end, arch.stack_register())
        if rows:
            return StackStates("ORC", address + bias, end + bias, _shifted(rows, bias), False)
    raise NotFound(
        f"{path}: no call-frame information for {address:#x} (no FDE in .eh_frame or "
        ".debug_frame, no ORC); build with -fasynchronous-unwind-tables or give the debug file"
    )
