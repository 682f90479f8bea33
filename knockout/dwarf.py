"""Source lines from DWARF: address -> file:line, file:line -> addresses.

Only what a lookup needs is decoded: ``.debug_aranges`` names the compile
unit (CU) holding an address, and only that CU's line program is run, once,
then kept as sorted arrays.  No walk over all DIEs happens on this path, so a
large file (a debug vmlinux, libpython) answers in the time of one CU.
DWARF 2-5 line programs are handled (gcc 12 emits version 5).

All addresses here are link-time addresses of the file; callers add the
load bias.
"""

from __future__ import annotations

import bisect
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError

from knockout.elf import ElfImage, debug_file_for, open_elf
from knockout.errors import NotFound

__all__ = [
    "CULines",
    "DwarfLines",
    "SourceLine",
    "dwarf_lines",
    "lines_for_addresses",
    "source_text",
]


@dataclass(frozen=True)
class SourceLine:
    """One row of a line table: code at ``address`` comes from ``file:line``."""

    address: int
    file: str
    line: int


class CULines:
    """The decoded line table of one compile unit, sorted by address."""

    def __init__(self, rows: list[tuple[int, int, int, bool]], files: list[str]) -> None:
        rows.sort(key=lambda r: (r[0], not r[3]))  # by address; an end row first
        self.addresses = [r[0] for r in rows]
        self.file_index = [r[1] for r in rows]
        self.lines = [r[2] for r in rows]
        self.ends = [r[3] for r in rows]
        self.files = files

    def at(self, address: int) -> tuple[str, int] | None:
        """The file and line of the code at ``address``, or None."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0 or self.ends[i]:
            return None
        return self.files[self.file_index[i]], self.lines[i]

    def rows(self, start: int, end: int) -> list[SourceLine]:
        """Rows whose code lies in ``[start, end)``, plus the row covering ``start``."""
        i = max(bisect.bisect_right(self.addresses, start) - 1, 0)
        out: list[SourceLine] = []
        while i < len(self.addresses) and self.addresses[i] < end:
            address = max(self.addresses[i], start)
            if out and out[-1].address == address:
                out.pop()  # of several rows at one address, the last one holds
            if not self.ends[i]:
                out.append(SourceLine(address, self.files[self.file_index[i]], self.lines[i]))
            i += 1
        return out


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _file_names(program: Any, comp_dir: str) -> list[str]:
    """Full paths of the line program's files, indexed as its rows index them."""
    version = program["version"]
    dirs = [_decode(d) for d in program["include_directory"]]
    names = []
    for entry in program["file_entry"]:
        index = entry["dir_index"]
        if version >= 5:
            directory = dirs[index] if index < len(dirs) else ""
        else:
            directory = comp_dir if index == 0 else dirs[index - 1]
        path = os.path.join(comp_dir, directory, _decode(entry["name"]))
        names.append(os.path.normpath(path))
    # DWARF < 5 numbers files from 1; index 0 then means "no file"
    return names if version >= 5 else ["<unknown>", *names]


class DwarfLines:
    """Line information of one ELF file (or its detached debug file)."""

    def __init__(self, image: ElfImage) -> None:
        self.path = image.path
        self._image = image
        self._info: Any = None
        self._aranges: Any = None
        self._ranges: list[tuple[int, int, int]] | None = None
        self._cus: dict[int, CULines] = {}

    @property
    def info(self) -> Any:
        """pyelftools' DWARFInfo, opened on first use."""
        if self._info is None:
            try:
                self._info = self._image.elf.get_dwarf_info(relocate_dwarf_sections=False)
            except (ELFError, DWARFError, KeyError, ValueError) as exc:
                raise NotFound(f"{self.path}: unreadable DWARF ({exc})") from None
        return self._info

    def _cu_offset(self, address: int) -> int | None:
        if self._aranges is None and self._image.has_section(".debug_aranges"):
            self._aranges = self.info.get_aranges()
        if self._aranges is not None:
            offset = self._aranges.cu_offset_at_addr(address)
            if offset is not None:
                return int(offset)
        return self._cu_offset_from_dies(address)

    def _cu_offset_from_dies(self, address: int) -> int | None:
        """Without aranges: the CUs' own address ranges (top DIEs only)."""
        if self._ranges is None:
            self._ranges = sorted(self._cu_ranges())
        for low, high, offset in self._ranges:
            if low <= address < high:
                return offset
        return None

    def _cu_ranges(self) -> Iterator[tuple[int, int, int]]:
        info = self.info
        for cu in info.iter_CUs():
            top = cu.get_top_DIE()
            attrs = top.attributes
            if "DW_AT_ranges" in attrs:
                for r in info.range_lists().get_range_list_at_offset(
                    attrs["DW_AT_ranges"].value, cu=cu
                ):
                    if hasattr(r, "begin_offset"):
                        yield r.begin_offset, r.end_offset, cu.cu_offset
            elif "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
                low = attrs["DW_AT_low_pc"].value
                high = attrs["DW_AT_high_pc"]
                end = high.value if high.form == "DW_FORM_addr" else low + high.value
                yield low, end, cu.cu_offset

    def _cu_lines(self, cu_offset: int) -> CULines:
        lines = self._cus.get(cu_offset)
        if lines is None:
            cu = self.info.get_CU_at(cu_offset)
            lines = self._decode_cu(cu) or CULines([], [])
            self._cus[cu_offset] = lines
        return lines

    def _decode_cu(self, cu: Any) -> CULines | None:
        program = self.info.line_program_for_CU(cu)
        if program is None:
            return None
        comp = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
        files = _file_names(program, _decode(comp.value) if comp else "")
        rows = []
        for entry in program.get_entries():
            state = entry.state
            if state is not None:
                rows.append((state.address, state.file, state.line, state.end_sequence))
        if files:
            rows = [r for r in rows if r[1] < len(files)]
        return CULines(rows, files)

    def at(self, address: int) -> tuple[str, int] | None:
        """``(file, line)`` of the code at link-time ``address``, or None."""
        offset = self._cu_offset(address)
        return None if offset is None else self._cu_lines(offset).at(address)

    def rows(self, start: int, end: int) -> list[SourceLine]:
        """The line rows of ``[start, end)`` (a function), in address order."""
        offset = self._cu_offset(start)
        return [] if offset is None else self._cu_lines(offset).rows(start, end)

    def addresses_for_line(self, file: str, line: int) -> list[SourceLine]:
        """Statement addresses generated for ``file:line`` (or the next line with code).

        ``file`` matches a table's file by path suffix (``mm/vmscan.c`` or
        ``vmscan.c``).  Each CU's line program header is read; only CUs that
        name the file decode their rows.
        """
        best: list[SourceLine] = []
        for cu in self.info.iter_CUs():
            hits = self._line_hits(cu, file, line)
            if hits and (not best or hits[0].line < best[0].line):
                best = hits
            elif hits and hits[0].line == best[0].line:
                best.extend(hits)
        return sorted(best, key=lambda s: s.address)

    def _line_hits(self, cu: Any, file: str, line: int) -> list[SourceLine]:
        program = self.info.line_program_for_CU(cu)
        if program is None:
            return []
        names = {os.path.basename(_decode(e["name"])) for e in program["file_entry"]}
        if os.path.basename(file) not in names:
            return []
        table = self._cu_lines(cu.cu_offset)
        wanted = {i for i, f in enumerate(table.files) if _suffix_match(f, file)}
        candidates = [
            (table.lines[i], table.addresses[i])
            for i in range(len(table.addresses))
            if table.file_index[i] in wanted and table.lines[i] >= line and not table.ends[i]
        ]
        if not candidates:
            return []
        first = min(c[0] for c in candidates)
        path = table.files[min(wanted)]
        return [SourceLine(a, path, n) for n, a in candidates if n == first]


def lines_for_addresses(rows: list[SourceLine], addresses: list[int]) -> list[SourceLine | None]:
    """For each instruction address (ascending), the row in effect there, or None.

    This is the interleaving step of ``disassemble /s``: ``rows`` come from
    :meth:`DwarfLines.rows` for the function, ``addresses`` from the decoder.
    """
    out: list[SourceLine | None] = []
    starts = [r.address for r in rows]
    for address in addresses:
        i = bisect.bisect_right(starts, address) - 1
        out.append(rows[i] if i >= 0 else None)
    return out


def _suffix_match(path: str, wanted: str) -> bool:
    wanted = os.path.normpath(wanted)
    return path == wanted or path.endswith("/" + wanted.lstrip("./"))


@functools.lru_cache(maxsize=32)
def _lines_for(path: str) -> DwarfLines | None:
    image = open_elf(path)
    if image.has_section(".debug_line"):
        return DwarfLines(image)
    debug = debug_file_for(image)
    if debug is not None:
        debug_image = open_elf(debug)
        if debug_image.has_section(".debug_line"):
            return DwarfLines(debug_image)
    return None


def dwarf_lines(path: str) -> DwarfLines | None:
    """The line information of ELF ``path`` (or its debug file by build-id), or None."""
    return _lines_for(os.path.realpath(path))


@functools.lru_cache(maxsize=64)
def _source_file(path: str) -> tuple[str, ...] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return tuple(line.rstrip("\n") for line in f)
    except OSError:
        return None


def source_text(path: str, line: int) -> str | None:
    """Line ``line`` (1-based) of source file ``path``, or None when unreadable."""
    lines = _source_file(path)
    if lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1]
