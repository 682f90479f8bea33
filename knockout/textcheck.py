"""A kernel function's live text compared with the debug vmlinux, allowing the boot-patched sites.

The text a running x86_64 kernel executes is not the text its vmlinux holds:
at boot the kernel rewrites recorded sites of it (and the decompressor
shifts absolute addresses by the KASLR offset).  Each kind of site is listed
in a table of the vmlinux itself; :func:`compare_with_vmlinux` finds every
byte range where the live text and the vmlinux differ and explains each by
the entries of those tables that fall inside the function:

==================  ============================  ==================================
table (symbols)     entry                          what boot writes there
==================  ============================  ==================================
``__mcount_loc``    ``unsigned long`` address      ftrace: ``call __fentry__`` -> nop5
``.return_sites``   ``s32`` self-relative          ``jmp __x86_return_thunk`` ->
                                                   ``ret; int3...`` or another thunk
``.retpoline_sites`` ``s32`` self-relative         ``call __x86_indirect_thunk_REG``
                                                   -> ``call *%REG`` / lfence / thunk
``.call_sites``     ``s32`` self-relative (6.2+)   call depth accounting
``.ibt_endbr_seal`` ``s32`` self-relative          unused ``endbr64`` -> poison/nop
``__jump_table``    ``struct jump_entry``          jump labels: nop <-> jmp (2 or 5)
``.static_call_sites`` ``struct static_call_site`` static calls: call/jmp/nop/ret
``.altinstructions`` ``struct alt_instr``          alternatives (instrlen bytes)
``.parainstructions`` ``struct paravirt_patch_site`` paravirt (until 6.7)
``.smp_locks``      ``s32`` self-relative          ``lock`` -> ``ds`` on one CPU
``.rela.text``      ``Elf64_Rela``                 KASLR: absolute references +delta,
                                                   per-cpu pc-relative ones -delta
==================  ============================  ==================================

vmlinux is linked: its relocations are resolved in the file, so no other
relocation applies; the ``.rela`` sections (``--emit-relocs``) are read only
to know which words the KASLR decompressor (``arch/x86/tools/relocs.c``,
``handle_relocations()``) moves.  The sites whose live content is checked
(ftrace, return thunks, jump labels, static calls, lock prefixes, KASLR
words) must hold what the kernel writes there; the others (alternatives,
paravirt, retpolines, call depth, endbr seal) may hold any bytes within the
recorded site.  FineIBT's ``.cfi_sites`` rewrite the ``__cfi_`` preamble
before a function, not its text, and are not read.

Entry layouts, for 6.1 and 6.12 x86_64:

- ``struct alt_instr``: ``s32 instr_offset; s32 repl_offset; u16 cpuid;
  u8 instrlen; u8 replacementlen;`` (12 bytes, packed) until commit
  5d1dd961e743 ("x86/alternatives: Add alt_instr.flags", v6.3) made the
  ``u16 cpuid`` a ``u32 ft_flags`` (14 bytes);
- ``struct paravirt_patch_site { u8 *instr; u8 type; u8 len; }`` (16 bytes)
  until commit f7af6977621a ("x86/paravirt: remove no longer needed paravirt
  patching code", v6.8) removed the table;
- ``struct jump_entry { s32 code; s32 target; long key; }`` (16 bytes,
  ``code`` relative to itself) and ``struct static_call_site { s32 addr;
  s32 key; }`` (8 bytes) are the same in both;
- ``__mcount_loc`` holds absolute addresses; the other tables ``s32``
  offsets from the entry itself.

>>> check = TextCheck("f", 0x1000, 0x1000, 4, {}, ())
>>> check.line()
'f: byte for byte the debug vmlinux'
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knockout.elf import ElfImage, open_elf
from knockout.errors import BadInput, KnockoutError, NotFound

__all__ = [
    "BootPatchTables",
    "Difference",
    "Site",
    "TextCheck",
    "boot_patch_tables",
    "check_functions",
    "compare_with_vmlinux",
    "vmlinux_clause",
]

NOP5 = bytes.fromhex("0f1f440000")  # x86_nops[5]: what ftrace and jump labels write
NOP2 = bytes.fromhex("6690")  # x86_nops[2]
_EM_X86_64 = 62

# relocation types the KASLR decompressor moves (arch/x86/tools/relocs.c, do_reloc64)
_R_64, _R_PC32, _R_PLT32, _R_32, _R_32S, _R_PC64 = 1, 2, 4, 10, 11, 24
_RELA = struct.Struct("<QQq")


@dataclass(frozen=True)
class Site:
    """One boot-patched site: its table, its link address and size."""

    table: str
    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True)
class Difference:
    """A run of bytes where live text and vmlinux differ (addresses are live ones)."""

    address: int
    symbol: str  # name+offset
    live: bytes
    vmlinux: bytes
    explained_by: tuple[str, ...]  # tables of the sites covering it; empty: unexplained
    why_not: str = ""  # for an unexplained run: a site it falls in whose content is wrong

    @property
    def explained(self) -> bool:
        return bool(self.explained_by)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": f"{self.address:#x}",
            "symbol": self.symbol,
            "live": self.live.hex(),
            "vmlinux": self.vmlinux.hex(),
            "explained_by": list(self.explained_by),
            "why_not": self.why_not,
        }

    def __str__(self) -> str:
        how = ", ".join(self.explained_by) or "UNEXPLAINED" + (
            f" ({self.why_not})" if self.why_not else ""
        )
        return f"{self.address:#x} {self.symbol}: {self.live.hex()} vs {self.vmlinux.hex()}: {how}"


@dataclass(frozen=True)
class TextCheck:
    """What :func:`compare_with_vmlinux` found for one function."""

    name: str
    live_address: int
    link_address: int
    size: int
    patched: dict[str, int]  # table -> sites whose bytes differ (all of them explained)
    differences: tuple[Difference, ...]
    sites_in_function: dict[str, int] = field(default_factory=dict)  # table -> sites recorded

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.explained]

    @property
    def ok(self) -> bool:
        """True when every difference is a boot-patched site."""
        return not self.unexplained

    @property
    def patched_sites(self) -> int:
        return sum(self.patched.values())

    def line(self) -> str:
        """One line: identical except N boot-patched sites (by table), or what is not."""
        if self.unexplained:
            runs = "; ".join(str(d) for d in self.unexplained)
            return f"{self.name}: {len(self.unexplained)} unexplained difference(s): {runs}"
        if not self.patched:
            return f"{self.name}: byte for byte the debug vmlinux"
        return (
            f"{self.name}: the debug vmlinux's except {self.patched_sites} sites the kernel "
            f"patched at boot ({by_table(self.patched)})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "live_address": f"{self.live_address:#x}",
            "link_address": f"{self.link_address:#x}",
            "size": self.size,
            "ok": self.ok,
            "patched": dict(self.patched),
            "sites_in_function": dict(self.sites_in_function),
            "differences": [d.as_dict() for d in self.differences],
            "line": self.line(),
        }


def by_table(counts: dict[str, int]) -> str:
    """``{"ftrace": 2, "return thunks": 5}`` -> ``'ftrace 2, return thunks 5'``.

    >>> by_table({"return thunks": 5, "ftrace": 2})
    'ftrace 2, return thunks 5'
    """
    return ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))


# --- what the kernel may write at each kind of site --------------------------------------


def _any(live: bytes, file: bytes) -> bool:
    return True


def _ftrace_fits(live: bytes, file: bytes) -> bool:
    # ftrace_init: nop5; a traced function: call to an ftrace trampoline
    return live == NOP5 or live[0] == 0xE8


def _return_fits(live: bytes, file: bytes) -> bool:
    # patch_return(): ret + int3 padding, or jmp to another return thunk
    return live == b"\xc3" + b"\xcc" * (len(live) - 1) or live[0] == 0xE9


def _jump_label_fits(live: bytes, file: bytes) -> bool:
    if len(live) == 2:
        return live == NOP2 or live[0] == 0xEB
    return live == NOP5 or live[0] == 0xE9


def _static_call_fits(live: bytes, file: bytes) -> bool:
    # __static_call_transform(): call, nop, jmp, ret (+int3), jcc (6.3+)
    return (
        live == NOP5
        or live[0] in (0xE8, 0xE9)
        or live[:1] == b"\xc3"
        or (live[0] == 0x0F and 0x80 <= live[1] <= 0x8F)
    )


def _lock_fits(live: bytes, file: bytes) -> bool:
    return live in (b"\xf0", b"\x3e")  # alternatives_smp_unlock: lock -> ds


_FITS: dict[str, Callable[[bytes, bytes], bool]] = {
    "ftrace": _ftrace_fits,
    "return thunks": _return_fits,
    "jump labels": _jump_label_fits,
    "static calls": _static_call_fits,
    "lock prefixes": _lock_fits,
}


def _branch_size(head: bytes, default: int = 5) -> int:
    """The size of the branch at a site from its first bytes (vmlinux's)."""
    if head[:1] == b"\xeb" or head[:2] == NOP2:
        return 2
    if head[:1] == b"\x0f" and len(head) > 1 and 0x80 <= head[1] <= 0x8F:
        return 6
    return default


# --- the tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    name: str
    sites: list[Site]  # sorted by address
    starts: list[int]
    decode_size: bool  # a site's size is that of the branch the vmlinux holds there


class BootPatchTables:
    """The boot-patch tables of one x86_64 debug vmlinux, each read once when first needed.

    Only the table sections are read (a few hundred KiB), plus the symbol
    table's bytes to find where each table starts and ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.image: ElfImage = open_elf(str(path))
        if self.image.elf["e_machine"] != "EM_X86_64":
            raise BadInput(
                f"{path}: the text check knows x86_64's boot-patch tables only; "
                "compare other architectures with the bytes read before the cuts"
            )
        self._symbols = self._find_symbols(_SYMBOLS)
        self.version = self._version()
        self._tables: dict[str, _Table] = {}

    # symbols ---------------------------------------------------------------------------

    def _find_symbols(self, names: Iterable[str]) -> dict[str, int]:
        """The value of each of ``names`` in ``.symtab``, found by a byte search (no full parse)."""
        symtab = self.image.elf.get_section_by_name(".symtab")
        if symtab is None:
            raise NotFound(
                f"{self.path}: no symbol table; name the debug vmlinux, not a stripped one"
            )
        strtab = self.image.elf.get_section(symtab["sh_link"]).data()
        data = symtab.data()
        found: dict[str, int] = {}
        for name in names:
            wanted = name.encode() + b"\0"
            at = strtab.find(wanted)
            while at >= 0 and name not in found:
                key = struct.pack("<I", at)
                pos = data.find(key)
                while pos >= 0:
                    if pos % 24 == 0:
                        found[name] = struct.unpack_from("<Q", data, pos + 8)[0]
                        break
                    pos = data.find(key, pos + 1)
                at = strtab.find(wanted, at + 1)
        return found

    def _version(self) -> tuple[int, int]:
        banner = self._symbols.get("linux_banner")
        if banner is None:
            raise NotFound(f"{self.path}: no linux_banner; is this a kernel's vmlinux?")
        text = self.image.read(banner, 32).decode("ascii", "replace")
        match = re.match(r"Linux version (\d+)\.(\d+)", text)
        if match is None:
            raise BadInput(f"{self.path}: linux_banner reads {text!r}; is this a kernel's vmlinux?")
        return int(match[1]), int(match[2])

    def _span(self, start: str, stop: str) -> bytes | None:
        a, b = self._symbols.get(start), self._symbols.get(stop)
        if a is None or b is None or b <= a:
            return None
        return self.image.read(a, b - a)

    # tables ----------------------------------------------------------------------------

    def table(self, name: str) -> _Table:
        """The sorted sites of table ``name`` (one of :data:`TABLE_NAMES`)."""
        if name not in self._tables:
            sites = sorted(self._read(name), key=lambda s: s.address)
            decode = name in ("jump labels", "static calls", "retpolines", "call depth")
            self._tables[name] = _Table(name, sites, [s.address for s in sites], decode)
        return self._tables[name]

    def _read(self, name: str) -> list[Site]:
        start, stop = _BOUNDS[name]
        data = self._span(start, stop)
        if data is None:
            return []
        base = self._symbols[start]
        if name == "ftrace":
            return [Site(name, a, 5) for (a,) in struct.iter_unpack("<Q", data) if a]
        if name == "jump labels":
            entries = struct.iter_unpack("<iiq", data)
            return [Site(name, base + 16 * i + c, 5) for i, (c, _t, _k) in enumerate(entries)]
        if name == "static calls":
            entries = struct.iter_unpack("<ii", data)
            return [Site(name, base + 8 * i + a, 5) for i, (a, _k) in enumerate(entries)]
        if name == "alternatives":
            return self._alternatives(base, data)
        if name == "paravirt":
            return [Site(name, a, n) for a, _t, n in struct.iter_unpack("<QBB6x", data) if n]
        size = {
            "return thunks": 5,
            "retpolines": 5,
            "call depth": 5,
            "endbr seal": 4,
            "lock prefixes": 1,
        }[name]
        entries = struct.iter_unpack("<i", data)
        return [Site(name, base + 4 * i + o, size) for i, (o,) in enumerate(entries)]

    def _alternatives(self, base: int, data: bytes) -> list[Site]:
        # commit 5d1dd961e743 (v6.3): u16 cpuid became u32 ft_flags, 12 -> 14 bytes
        layout = struct.Struct("<iiIBB" if self.version >= (6, 3) else "<iiHBB")
        if len(data) % layout.size:
            raise BadInput(
                f"{self.path}: .altinstructions is {len(data)} bytes, not a multiple of "
                f"{layout.size} (struct alt_instr of {self.version[0]}.{self.version[1]}); "
                "this kernel's layout is not known to knockout.textcheck"
            )
        return [
            Site("alternatives", base + layout.size * i + off, n)
            for i, (off, _r, _f, n, _rn) in enumerate(layout.iter_unpack(data))
            if n
        ]

    def sites(self, start: int, end: int) -> list[Site]:
        """Every boot-patched site overlapping link addresses ``[start, end)``."""
        out: list[Site] = []
        for name in TABLE_NAMES:
            table = self.table(name)
            i = bisect.bisect_left(table.starts, start - 16)
            while i < len(table.sites) and table.starts[i] < end:
                site = table.sites[i]
                if table.decode_size:
                    head = self.image.read(site.address, 2)
                    site = Site(site.table, site.address, _branch_size(head, site.size))
                if site.end > start:
                    out.append(site)
                i += 1
        return out

    # KASLR ------------------------------------------------------------------------------

    def relocations(self, start: int, end: int) -> list[tuple[int, int]]:
        """``(link address, type)`` of each ``.rela`` entry of the text in ``[start, end)``."""
        elf = self.image.elf
        for index in range(elf.num_sections()):
            header = elf._get_section_header(index)
            if header["sh_type"] != "SHT_RELA":
                continue
            target = elf._get_section_header(header["sh_info"])
            if not (target["sh_addr"] <= start < target["sh_addr"] + target["sh_size"]):
                continue
            return self._rela_range(header["sh_offset"], header["sh_size"], start, end)
        return []

    def _rela_range(self, offset: int, size: int, start: int, end: int) -> list[tuple[int, int]]:
        count = size // _RELA.size
        fd = os.open(self.path, os.O_RDONLY)
        try:

            def at(i: int) -> tuple[int, int]:
                r_offset, info, _addend = _RELA.unpack(os.pread(fd, _RELA.size, offset + 24 * i))
                return r_offset, info & 0xFFFFFFFF

            lo, hi = 0, count  # entries are sorted by r_offset (ld --emit-relocs); bisect
            while lo < hi:
                mid = (lo + hi) // 2
                if at(mid)[0] < start - 8:
                    lo = mid + 1
                else:
                    hi = mid
            out: list[tuple[int, int]] = []
            while lo < count:
                chunk = os.pread(fd, _RELA.size * min(256, count - lo), offset + 24 * lo)
                lo += len(chunk) // 24
                for r_offset, info, _a in _RELA.iter_unpack(chunk[: len(chunk) // 24 * 24]):
                    if r_offset >= end:
                        return out
                    out.append((r_offset, info & 0xFFFFFFFF))
                if not chunk:
                    break
        finally:
            os.close(fd)
        return out


#: tables in the order their sites are preferred when several cover a byte
TABLE_NAMES = (
    "ftrace",
    "return thunks",
    "retpolines",
    "call depth",
    "endbr seal",
    "jump labels",
    "static calls",
    "alternatives",
    "paravirt",
    "lock prefixes",
)

_BOUNDS = {
    "ftrace": ("__start_mcount_loc", "__stop_mcount_loc"),
    "return thunks": ("__return_sites", "__return_sites_end"),
    "retpolines": ("__retpoline_sites", "__retpoline_sites_end"),
    "call depth": ("__call_sites", "__call_sites_end"),
    "endbr seal": ("__ibt_endbr_seal", "__ibt_endbr_seal_end"),
    "jump labels": ("__start___jump_table", "__stop___jump_table"),
    "static calls": ("__start_static_call_sites", "__stop_static_call_sites"),
    "alternatives": ("__alt_instructions", "__alt_instructions_end"),
    "paravirt": ("__parainstructions", "__parainstructions_end"),
    "lock prefixes": ("__smp_locks", "__smp_locks_end"),
}
_SYMBOLS = ("linux_banner", *(n for pair in _BOUNDS.values() for n in pair))


@functools.lru_cache(maxsize=4)
def _tables_cached(path: str, mtime_ns: int) -> BootPatchTables:
    return BootPatchTables(Path(path))


def boot_patch_tables(vmlinux: Path) -> BootPatchTables:
    """:class:`BootPatchTables` of ``vmlinux``, kept per path and modification time."""
    try:
        mtime = os.stat(vmlinux).st_mtime_ns
    except OSError as exc:
        raise NotFound(
            f"{vmlinux}: cannot read ({exc.strerror}); run 'make debug-vmlinux'"
        ) from None
    return _tables_cached(str(vmlinux), mtime)


def _link_address(tables: BootPatchTables, name: str) -> int:
    from knockout.symbols import elf_symbols

    return elf_symbols(str(tables.path)).lookup(name).address


def compare_with_vmlinux(
    vmlinux: Path, name: str, live_address: int, live: bytes, link_address: int | None = None
) -> TextCheck:
    """Compare function ``name``'s live text (``live`` read at ``live_address``) with ``vmlinux``.

    The function is found in ``vmlinux`` by its symbol (``link_address``
    overrides that); the live one is KASLR-shifted by ``live_address -
    link_address``.  Every differing run of bytes is explained by the boot
    patch sites covering it, or reported unexplained.
    """
    tables = boot_patch_tables(vmlinux)
    link = _link_address(tables, name) if link_address is None else link_address
    file = tables.image.read(link, len(live))
    delta = live_address - link
    cover: dict[int, Site] = {}  # offset -> the site explaining it
    wrong: dict[int, str] = {}  # offset -> why the site covering it does not explain it
    patched: set[Site] = set()
    sites = tables.sites(link, link + len(live))
    if delta and live != file:
        sites += _kaslr_words(tables, link, len(live), delta, live, file)
    for site in sites:
        lo, hi = max(site.address, link) - link, min(site.end, link + len(live)) - link
        fits = _FITS.get(site.table, _any)
        if site.table == "KASLR relocations" or fits(live[lo:hi], file[lo:hi]):
            for off in range(lo, hi):
                cover.setdefault(off, site)
        else:
            for off in range(lo, hi):
                wrong.setdefault(
                    off,
                    f"a {site.table} site at {name}+{lo:#x} not holding what the "
                    "kernel writes there",
                )
    runs: list[Difference] = []
    off = 0
    while off < len(live):
        if live[off] == file[off]:
            off += 1
            continue
        end = off
        explained = off in cover
        while end < len(live) and live[end] != file[end] and (end in cover) == explained:
            end += 1
        covering = {cover[i] for i in range(off, end)} if explained else set()
        patched |= covering
        runs.append(
            Difference(
                address=live_address + off,
                symbol=f"{name}+{off:#x}",
                live=live[off:end],
                vmlinux=file[off:end],
                explained_by=tuple(sorted({s.table for s in covering})),
                why_not="" if explained else wrong.get(off, ""),
            )
        )
        off = end
    in_function = Counter(s.table for s in sites if s.table != "KASLR relocations")
    return TextCheck(
        name=name,
        live_address=live_address,
        link_address=link,
        size=len(live),
        patched=dict(Counter(s.table for s in patched)),
        differences=tuple(runs),
        sites_in_function=dict(in_function),
    )


def _kaslr_words(
    tables: BootPatchTables, link: int, size: int, delta: int, live: bytes, file: bytes
) -> list[Site]:
    """The relocated words whose live value is the file's moved by ``delta`` (as relocs.c does)."""
    out = []
    for address, kind in tables.relocations(link, link + size):
        if kind in (_R_32, _R_32S):
            width, sign = 4, 1
        elif kind == _R_64:
            width, sign = 8, 1
        elif kind in (_R_PC32, _R_PLT32):  # only per-cpu targets are moved, the other way
            width, sign = 4, -1
        elif kind == _R_PC64:
            width, sign = 8, -1
        else:
            continue
        lo = address - link
        if lo < 0 or lo + width > size:
            continue
        mask = (1 << (8 * width)) - 1
        was = int.from_bytes(file[lo : lo + width], "little")
        now = int.from_bytes(live[lo : lo + width], "little")
        if now != was and (now - was) & mask == (sign * delta) & mask:
            out.append(Site("KASLR relocations", address, width))
    return out


# --- for the demo's document ---------------------------------------------------------------


def check_functions(
    functions: dict[str, tuple[int, bytes]], vmlinux: Path | None = None
) -> dict[str, Any]:
    """:func:`compare_with_vmlinux` for each ``name -> (live address, live bytes)``, as JSON.

    ``vmlinux`` defaults to the running kernel's that ``make debug-vmlinux``
    cached; without one the answer says why and how to get it.
    """
    if vmlinux is None:
        from knockout.dwarf import debug_vmlinux

        found = debug_vmlinux()
        if found.path is None:
            return {"vmlinux": None, "reason": found.reason}
        vmlinux = found.path
    try:
        checks = [compare_with_vmlinux(vmlinux, n, a, b) for n, (a, b) in sorted(functions.items())]
    except KnockoutError as exc:  # the check could not be made: say why, do not end the run
        return {"vmlinux": None, "reason": f"{vmlinux}: {exc}"}
    patched: Counter[str] = Counter()
    for check in checks:
        patched.update(check.patched)
    return {
        "vmlinux": str(vmlinux),
        "ok": all(c.ok for c in checks),
        "patched": dict(patched),
        "functions": {c.name: c.as_dict() for c in checks},
    }


def vmlinux_clause(doc: dict[str, Any] | None) -> str:
    """The demo's words for :func:`check_functions`' answer (``None``: not checked).

    >>> vmlinux_clause({"vmlinux": "v", "ok": True, "patched": {"ftrace": 2, "return thunks": 5}})
    "the debug vmlinux's except 7 sites the kernel patched at boot (ftrace 2, return thunks 5)"
    >>> vmlinux_clause({"vmlinux": None, "reason": "no debug vmlinux"})
    'not compared with the debug vmlinux (no debug vmlinux)'
    """
    if doc is None:
        return "not compared with the debug vmlinux"
    if doc.get("vmlinux") is None:
        return f"not compared with the debug vmlinux ({doc.get('reason', 'not found')})"
    if not doc["ok"]:
        bad = [
            f"{d['symbol']} {d['live']} vs {d['vmlinux']}"
            for f in doc["functions"].values()
            for d in f["differences"]
            if not d["explained_by"]
        ]
        return f"NOT the debug vmlinux's: {len(bad)} unexplained difference(s) ({'; '.join(bad)})"
    total = sum(doc["patched"].values())
    if not total:
        return "byte for byte the debug vmlinux's"
    return (
        f"the debug vmlinux's except {total} sites the kernel patched at boot "
        f"({by_table(doc['patched'])})"
    )
