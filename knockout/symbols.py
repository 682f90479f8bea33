"""Symbols: name+offset <-> address, for the kernel, ELF files and processes.

Specs accepted by :meth:`SymbolTable.resolve`: ``SYMBOL``, ``SYMBOL+0x150``
(or ``+336``), ``SYMBOL@module``, ``0xADDR`` and ``file.c:LINE`` (the latter
through DWARF, see :mod:`knockout.dwarf`).

Builders: :func:`kallsyms`, :func:`elf_symbols`, :func:`process_symbols`.

>>> table = SymbolTable([Symbol("f", 0x1000, 0x20), Symbol("g", 0x1020, 0x10)])
>>> str(table.resolve("f+0x8")), str(table.symbolize(0x1024))
('f+0x8', 'g+0x4')
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from knockout.elf import RawSymbol, debug_file_for, load_bias, open_elf, open_file
from knockout.errors import BadInput, NotFound, Refused

__all__ = [
    "Image",
    "Location",
    "Symbol",
    "SymbolTable",
    "elf_symbols",
    "kallsyms",
    "parse_kallsyms",
    "process_symbols",
    "with_debug_image",
]


class Symbol(NamedTuple):
    """A function (or other text symbol) at its runtime address.

    A named tuple, not a dataclass: tables of 100 000 symbols (kallsyms,
    libpython) are built on every command, and a tuple is made ~5x faster.
    """

    name: str
    address: int
    size: int  # 0 when the table does not know (kallsyms): then up to the next symbol
    module: str | None = None  # kernel module name, or path of the mapped ELF

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True)
class Location:
    """A resolved spec: an address and, where known, the symbol it lies in."""

    address: int
    symbol: Symbol | None = None

    @property
    def offset(self) -> int:
        return self.address - self.symbol.address if self.symbol else 0

    def __str__(self) -> str:
        if self.symbol is None:
            return f"{self.address:#x}"
        if self.offset == 0:
            return self.symbol.name
        return f"{self.symbol.name}+{self.offset:#x}"


@dataclass(frozen=True)
class Image:
    """An ELF file whose code the table covers: runtime = link-time + ``bias``."""

    path: str
    bias: int = 0
    start: int = 0  # runtime range the file is mapped at (0, 0: everything)
    end: int = 0

    def contains(self, address: int) -> bool:
        """Whether ``address`` (runtime) lies in this file's mapping."""
        return self.start == self.end == 0 or self.start <= address < self.end


_SPEC_LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+)$")
_SPEC_SYM = re.compile(r"^(?P<name>[^+\s]+?)(?:\+(?P<off>(?:0[xX][0-9a-fA-F]+|\d+)))?$")


def _sort_key(symbol: Symbol) -> tuple[int, int, str]:
    """By address; among aliases, the name with fewest leading underscores first."""
    name = symbol.name
    return (symbol.address, len(name) - len(name.lstrip("_")), name)


class SymbolTable:
    """An immutable set of text symbols sorted by address, with sizes.

    ``images`` are the ELF files behind the symbols (none for kallsyms); they
    give ``file.c:LINE`` specs and source lines through DWARF.
    """

    def __init__(
        self,
        symbols: Iterable[Symbol],
        images: Sequence[Image] = (),
        description: str = "symbol table",
    ) -> None:
        ordered = sorted(dict.fromkeys(symbols), key=_sort_key)
        self.symbols: tuple[Symbol, ...] = tuple(ordered)
        self.images: tuple[Image, ...] = tuple(images)
        self.description = description
        self._addresses = [s.address for s in ordered]
        self._by_name: dict[str, list[Symbol]] = {}
        for s in ordered:
            self._by_name.setdefault(s.name, []).append(s)

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"<SymbolTable {self.description}: {len(self.symbols)} symbols>"

    def lookup(self, name: str) -> Symbol:
        """The symbol called ``name`` (``name@module`` picks among duplicates)."""
        found = self._by_name.get(name, [])
        if not found and "@" in name:  # name@module (names may hold '@' too: printf@plt)
            base, _, module = name.rpartition("@")
            found = [
                s
                for s in self._by_name.get(base, [])
                if s.module and _module_matches(s.module, module)
            ]
        if not found:
            raise NotFound(self._unknown_message(name))
        distinct = {s.address for s in found}
        if len(distinct) == 1:
            return found[0]
        return self._disambiguate(name, found)

    def _disambiguate(self, name: str, found: list[Symbol]) -> Symbol:
        sized = [s for s in found if s.size]
        if len({s.address for s in sized}) == 1:
            return sized[0]
        places = ", ".join(
            f"{s.address:#x}" + (f" in {s.module}" if s.module else "") for s in found[:6]
        )
        modules = {s.module for s in found}
        how = (
            f"write {name}@MODULE or the address"
            if len(modules) > 1
            else "write the address (e.g. 0x...)"
        )
        raise BadInput(f"{len(found)} symbols are called {name!r} ({places}); {how}")

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._by_name, n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(close)}?" if close else f" in {self.description}"
        return f"no symbol {name!r}{hint}"

    def symbolize(self, address: int) -> Location | None:
        """The symbol ``address`` lies in, or None when it lies in none."""
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None
        i = bisect.bisect_left(self._addresses, self._addresses[i])
        symbol = self.symbols[i]
        if symbol.size and address >= symbol.end:
            return None
        if not symbol.size and address != symbol.address:
            return None
        return Location(address, symbol)

    def resolve(self, spec: str) -> Location:
        """``SYMBOL``, ``SYMBOL+OFF``, ``0xADDR`` or ``file.c:LINE`` -> :class:`Location`."""
        spec = spec.strip()
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", spec):
            address = int(spec, 16)
            return self.symbolize(address) or Location(address)
        match = _SPEC_LINE.match(spec)
        if match:
            return self._resolve_line(match["file"], int(match["line"]))
        match = _SPEC_SYM.match(spec)
        if not match:
            raise BadInput(
                f"cannot read {spec!r}; write SYMBOL, SYMBOL+0x150, SYMBOL+336, 0xADDR "
                "or file.c:LINE"
            )
        symbol = self.lookup(match["name"])
        offset = int(match["off"], 0) if match["off"] else 0
        if symbol.size and offset >= symbol.size:
            raise BadInput(
                f"offset {offset:#x} is past the end of {symbol.name} "
                f"({symbol.size:#x} = {symbol.size} bytes); use an offset below {symbol.size:#x}"
            )
        return Location(symbol.address + offset, symbol)

    def _resolve_line(self, file: str, line: int) -> Location:
        from knockout.dwarf import dwarf_lines

        with_dwarf = [(image, dwarf_lines(image.path)) for image in self.images]
        searched = [(image, lines) for image, lines in with_dwarf if lines is not None]
        if not searched:
            where = ", ".join(i.path for i in self.images) or self.description
            raise NotFound(
                f"{file}:{line}: no DWARF line information in {where}; build with -g, "
                "install the -dbg/-dbgsym package, or pass --elf a vmlinux/ELF with debug info"
            )
        for image, lines in searched:
            assert lines is not None
            hits = lines.addresses_for_line(file, line)
            if hits:
                address = hits[0].address + image.bias
                return self.symbolize(address) or Location(address)
        raise NotFound(f"no code for {file}:{line} in {searched[0][1].path}; check file and line")

    def image_for(self, address: int) -> Image | None:
        """The ELF image that holds runtime ``address``, if any."""
        for image in self.images:
            if image.contains(address):
                return image
        return None


def _module_matches(module: str, wanted: str) -> bool:
    return module == wanted or os.path.basename(module) == wanted


# --- kallsyms -----------------------------------------------------------------

_TEXT_TYPES = frozenset("tTwW")


def parse_kallsyms(text: str, description: str = "kallsyms") -> SymbolTable:
    """A table from the text of ``/proc/kallsyms``: text symbols, sizes to the next one."""
    raw: list[tuple[int, str, str | None]] = []
    any_nonzero = False
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3:
            raise BadInput(f"{description}:{number}: expected 'ADDRESS TYPE NAME [MODULE]'")
        try:
            address = int(fields[0], 16)
        except ValueError:
            raise BadInput(f"{description}:{number}: {fields[0]!r} is not a hex address") from None
        any_nonzero = any_nonzero or address != 0
        if fields[1] in _TEXT_TYPES:
            module = fields[3].strip("[]") if len(fields) > 3 else None
            raw.append((address, fields[2], module))
    if raw and not any_nonzero:
        raise Refused(
            f"{description}: every address reads as zero; run as root or set kernel.kptr_restrict=0"
        )
    return SymbolTable(_sized(raw), description=description)


def _sized(raw: list[tuple[int, str, str | None]]) -> list[Symbol]:
    """Give each symbol the size up to the next higher address (0 for the last)."""
    addresses = sorted({a for a, _, _ in raw})
    following = dict(zip(addresses, [*addresses[1:], None], strict=True))
    out = []
    for address, name, module in raw:
        nxt = following[address]
        out.append(Symbol(name, address, nxt - address if nxt is not None else 0, module))
    return out


def kallsyms(path: str = "/proc/kallsyms") -> SymbolTable:
    """The kernel's text symbols (modules' kept as ``[module]`` names)."""
    with open_file(path) as f:
        text = f.read().decode("utf-8", "replace")
    return parse_kallsyms(text, description=path)


# --- ELF files and processes ----------------------------------------------------


def _elf_image_symbols(path: str, bias: int, module: str | None) -> list[Symbol]:
    return list(_cached_image_symbols(path, os.stat(path).st_mtime_ns, bias, module))


@functools.lru_cache(maxsize=256)
def _cached_image_symbols(
    path: str, mtime_ns: int, bias: int, module: str | None
) -> tuple[Symbol, ...]:
    return tuple(
        Symbol(r.name, r.address + bias, r.size, module) for r in _full_symbols(path)
    )


def _full_symbols(path: str) -> list[RawSymbol]:
    """The file's text symbols; a stripped file's from its detached debug file (by build-id).

    Distributions ship binaries with ``.dynsym`` only (Debian's python3.11:
    its exported API, none of its static functions) and the whole ``.symtab``
    in a ``-dbg``/``-dbgsym`` package: with it installed, every function can
    be named and cut.
    """
    image = open_elf(path)
    if image.has_section(".symtab"):
        return image.text_symbols()
    debug = debug_file_for(image)
    if debug is not None:
        with contextlib.suppress(BadInput, NotFound, Refused, OSError):
            full = open_elf(debug)
            if full.has_section(".symtab"):
                return full.text_symbols() + image.plt_symbols()
    return image.text_symbols()


def elf_symbols(path: str, bias: int = 0) -> SymbolTable:
    """Text symbols of an ELF file (``.symtab``, else ``.dynsym``), shifted by ``bias``.

    Tables are cached per file, modification time and bias: they are immutable.
    """
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        open_file(path)  # raises the one-line error
        raise
    return _elf_table(path, mtime, bias)


@functools.lru_cache(maxsize=16)
def _elf_table(path: str, mtime_ns: int, bias: int) -> SymbolTable:
    symbols = _cached_image_symbols(path, mtime_ns, bias, None)
    if not symbols:
        raise NotFound(f"{path}: no function symbols (.symtab and .dynsym empty); use 0xADDR")
    return SymbolTable(symbols, [Image(path, bias)], description=path)


@dataclass
class _Mapping:
    start: int
    end: int
    offset: int


def _read_maps(pid: int) -> dict[str, list[_Mapping]]:
    path = f"/proc/{pid}/maps"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFound(f"no process {pid}; check the pid with ps") from None
    except PermissionError:
        raise Refused(f"cannot read {path}; run as root or as the process's owner") from None
    files: dict[str, list[_Mapping]] = {}
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/") or fields[5].endswith("(deleted)"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        files.setdefault(fields[5], []).append(_Mapping(start, end, int(fields[2], 16)))
    return files


def process_symbols(pid: int) -> SymbolTable:
    """Symbols of every ELF mapped into process ``pid``, at their runtime addresses."""
    symbols: list[Symbol] = []
    images = []
    for path, mappings in _read_maps(pid).items():
        first = min(mappings, key=lambda m: m.offset)
        try:
            bias = load_bias(path, first.start, first.offset)
            found = _elf_image_symbols(path, bias, path)
        except (BadInput, NotFound, Refused, OSError):
            continue  # not an ELF (a font, a locale archive) or unreadable
        symbols.extend(found)
        images.append(
            Image(path, bias, min(m.start for m in mappings), max(m.end for m in mappings))
        )
    return SymbolTable(symbols, images, description=f"pid {pid}")


def with_debug_image(table: SymbolTable, elf: str) -> SymbolTable:
    """``table`` (e.g. kallsyms) with ``elf`` (a debug vmlinux) for source lines.

    The file's link-time addresses are shifted by the offset between the
    two tables' ``_text`` (the KASLR offset).
    """
    offset = table.lookup("_text").address - elf_symbols(elf).lookup("_text").address
    return SymbolTable(table.symbols, [Image(elf, offset)], description=table.description)
