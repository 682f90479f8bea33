"""Listings: decoded instructions annotated with their symbol, source line and branch target.

What ``knockout disasm`` prints, as a library: a :class:`Disassembler` reads
bytes through a reader (an ELF file, a process, the kernel), decodes them,
and names each instruction ``symbol+offset`` with its source line (DWARF)
and, for a direct branch or call, its destination.

>>> from knockout.symbols import Symbol, SymbolTable
>>> code = bytes.fromhex("f30f1efa31c0c3")
>>> d = Disassembler(SymbolTable([Symbol("f", 0x1000, 7)]), lambda a, n: code[a - 0x1000:][:n],
...                  "x86_64")
>>> [(line.where, line.text) for line in d.lines(0x1000, 7)]
[('<f>', 'endbr64'), ('<f+0x4>', 'xor eax, eax'), ('<f+0x6>', 'ret')]
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knockout.arch import Arch, get_arch
from knockout.asm import disasm
from knockout.dwarf import SourceLine, dwarf_lines, lines_for_addresses, source_text
from knockout.errors import NotFound
from knockout.insn import Insn
from knockout.symbols import Location, Symbol, SymbolTable

__all__ = ["DisasmLine", "Disassembler", "Reader", "decode_all", "render_text"]

#: reads ``size`` bytes at ``address``
Reader = Callable[[int, int], bytes]


@dataclass(slots=True)
class DisasmLine:
    """One decoded instruction with where it is and where it came from."""

    insn: Insn
    symbol: Symbol | None  # the function the instruction lies in
    offset: int  # from the symbol's start (0 without a symbol)
    source: SourceLine | None = None
    target: Location | None = None  # a direct branch's or call's destination

    @property
    def location(self) -> Location:
        """The instruction's address as a :class:`Location`."""
        return Location(self.insn.address, self.symbol)

    def as_json(self) -> dict[str, object]:
        """The JSON record of this instruction."""
        return {
            "address": self.insn.address,
            "symbol": self.symbol.name if self.symbol else None,
            "offset": self.offset if self.symbol else None,
            "bytes": self.insn.data.hex(),
            "text": self.text,
            "file": self.source.file if self.source else None,
            "line": self.source.line if self.source else None,
        }

    @property
    def where(self) -> str:
        """``<symbol+0x10>`` (empty without a symbol)."""
        if self.symbol is None:
            return ""
        return f"<{self.symbol.name}+{self.offset:#x}>" if self.offset else f"<{self.symbol.name}>"

    @property
    def text(self) -> str:
        """The instruction text, a branch target symbolized: ``call 0x1139 <burn>``."""
        if self.target is None or self.target.symbol is None:
            return self.insn.text
        return f"{self.insn.text} <{self.target}>"


def decode_all(data: bytes, arch: Arch | str, vma: int) -> list[Insn]:
    """Decode all of ``data``; bytes capstone cannot decode become ``(bad)``.

    >>> [i.text for i in decode_all(bytes.fromhex("c3ff"), "x86_64", 0)]
    ['ret', '(bad)']
    """
    a = get_arch(arch)
    out: list[Insn] = []
    offset = 0
    while offset < len(data):
        chunk = disasm(data[offset:], a, vma + offset)
        out.extend(chunk)
        offset = chunk[-1].end - vma if chunk else offset
        if offset < len(data):
            step = min(a.insn_align, len(data) - offset)
            out.append(Insn(vma + offset, data[offset : offset + step], "(bad)", ""))
            offset += step
    return out


class Disassembler:
    """Listings of code read through ``read``, named from ``table``.

    The bytes are read on every call; a listing already made from the same
    bytes at the same address is reused (the search re-reads a function
    after every cut and mostly finds it unchanged), so a cut shows at once.
    Listings are shared: do not modify them.  ``source_dirs`` are tried,
    in order, for source files whose recorded path is relative.
    """

    #: listings kept for reuse
    CACHE_SIZE = 32

    def __init__(
        self,
        table: SymbolTable,
        read: Reader,
        arch: Arch | str,
        *,
        source_dirs: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.read = read
        self.arch = get_arch(arch)
        self.source_dirs = tuple(source_dirs)
        self._made: OrderedDict[tuple[int, bytes, bool], list[DisasmLine]] = OrderedDict()

    def lines(self, start: int, size: int, *, source: bool = False) -> list[DisasmLine]:
        """The listing of ``size`` bytes at ``start`` (with source lines if ``source``)."""
        data = self.read(start, size)
        key = (start, data, source)
        made = self._made.get(key)
        if made is not None:
            self._made.move_to_end(key)
            return made
        made = self._annotate(start, data, source)
        self._made[key] = made
        if len(self._made) > self.CACHE_SIZE:
            self._made.popitem(last=False)
        return made

    def source_text(self, file: str, line: int) -> str | None:
        """The text of ``file``'s ``line`` (a relative path searched in :attr:`source_dirs`)."""
        if not os.path.isabs(file):
            for directory in self.source_dirs:
                text = source_text(os.path.join(directory, file), line)
                if text is not None:
                    return text
        return source_text(file, line)

    def _annotate(self, start: int, data: bytes, source: bool) -> list[DisasmLine]:
        table, arch = self.table, self.arch
        insns = decode_all(data, arch, start)
        rows = self._source_rows(start, start + len(data)) if source else []
        sources = lines_for_addresses(rows, [i.address for i in insns])
        found = table.symbolize(start)
        function = found.symbol if found else None
        low, high = (function.address, function.end) if function else (0, 0)

        def locate(address: int) -> Location | None:
            if low <= address < high:  # inside the function: no table search
                return Location(address, function)
            return table.symbolize(address)

        out = []
        for insn, row in zip(insns, sources, strict=True):
            address = insn.address
            if low <= address < high:
                symbol, offset = function, address - low
            else:
                where = table.symbolize(address)
                symbol, offset = (where.symbol, where.offset) if where else (None, 0)
            target = arch.branch_target(insn)
            out.append(
                DisasmLine(insn, symbol, offset, row, None if target is None else locate(target))
            )
        return out

    def _source_rows(self, start: int, end: int) -> list[SourceLine]:
        """Line rows for runtime ``[start, end)``; a one-line error when there is no DWARF."""
        image = self.table.image_for(start)
        lines = dwarf_lines(image.path) if image else None
        if image is None or lines is None:
            where = image.path if image else self.table.description
            raise NotFound(
                f"no DWARF line information for {where}; build with -g, install the "
                "-dbg/-dbgsym package, or pass --elf a vmlinux/ELF with debug info"
            )
        bias = image.bias
        return [
            SourceLine(r.address + bias, r.file, r.line)
            for r in lines.rows(start - bias, end - bias)
        ]


def render_text(
    lines: list[DisasmLine],
    mark: int | None = None,
    text_of: Callable[[str, int], str | None] | None = None,
    arch: Arch | None = None,
) -> list[str]:
    """gdb-like text: ``=>`` marks ``mark``; source headings where the line changes.

    ``text_of(file, line)`` gives source text (default: :func:`knockout.dwarf.source_text`).
    With a fixed-width ``arch`` each instruction's word follows its bytes, as
    the manuals (and the seed) write it: ``1c 00 80 d2  0xd280001c  mov x28, #0``.
    """
    lookup = text_of or (lambda file, line: source_text(file, line))
    out: list[str] = []
    append = out.append
    width = max((len(line.insn.data) for line in lines), default=1) * 3 - 1
    last: tuple[str, int] | None = None
    last_row: SourceLine | None = None
    shown: dict[str, int] = {}  # highest source line printed per file
    last_symbol: Symbol | None = None
    name = ""
    for line in lines:
        row = line.source
        if row is not None and row is not last_row:
            last_row = row
            if (row.file, row.line) != last:
                out.extend(_source_block(row, shown, lookup))
                last = (row.file, row.line)
        insn = line.insn
        address = insn.address
        symbol = line.symbol
        if symbol is not last_symbol:
            last_symbol = symbol
            name = f" <{symbol.name}" if symbol else ""
        offset = line.offset
        where = (f"{name}+{offset:#x}>" if offset else name + ">") if symbol else ""
        text = f"{insn.mnemonic} {insn.op_str}" if insn.op_str else insn.mnemonic
        if line.target is not None and line.target.symbol is not None:
            text = f"{text} <{line.target}>"
        word = arch.word_of(insn.data) if arch is not None else None
        if word is not None:
            text = f"{word}\t{text}"
        append(
            f"{'=>' if address == mark else '  '} {address:#018x}{where}:\t"
            f"{insn.data.hex(' ').ljust(width)}\t{text}"
        )
    return out


def _source_block(
    row: SourceLine, shown: dict[str, int], lookup: Callable[[str, int], str | None]
) -> list[str]:
    """The heading and source text printed when the source line changes."""
    highest = shown.get(row.file, 0)
    first = highest + 1 if 0 < row.line - highest <= 8 else row.line
    text = [(n, lookup(row.file, n)) for n in range(first, row.line + 1)]
    if text[-1][1] is None:
        return [f"{row.file}:{row.line}"]
    shown[row.file] = max(highest, row.line)
    return [f"{row.file}:{row.line}"] + [f"{n}\t{t}" for n, t in text if t is not None]
