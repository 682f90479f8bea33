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
import io
import mmap
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

from knockout.elf import ElfImage, debug_file_for, open_elf
from knockout.errors import NotFound

__all__ = [
    "CULines",
    "DwarfLines",
    "Found",
    "Row",
    "SourceLine",
    "debug_cache",
    "debug_vmlinux",
    "dwarf_lines",
    "gdb_line_table",
    "kernel_source_dir",
    "lines_for_addresses",
    "notes_build_id",
    "run_line_program",
    "running_kernel_build_id",
    "source_text",
]


class SourceLine(NamedTuple):
    """One row of a line table: code at ``address`` comes from ``file:line``."""

    address: int
    file: str
    line: int


#: a row of a line program: (address, file index, line, end_sequence, is_stmt)
Row = tuple[int, int, int, bool, bool]


class CULines:
    """The decoded line table of one compile unit, sorted by address.

    ``rows`` come in line-program order.  Lookups by address (:meth:`at`,
    :meth:`rows`) answer what gdb answers (:func:`gdb_line_table`); the raw
    rows, sorted, serve lookups by line.
    """

    def __init__(self, rows: list[Row], files: list[str]) -> None:
        self.effective = gdb_line_table(rows)
        self._starts = [r[0] for r in self.effective]
        rows = sorted(rows, key=lambda r: (r[0], not r[3]))  # by address; an end row first
        self.addresses = [r[0] for r in rows]
        self.file_index = [r[1] for r in rows]
        self.lines = [r[2] for r in rows]
        self.ends = [r[3] for r in rows]
        self.stmts = [r[4] for r in rows]  # is_stmt: where a breakpoint for the line goes
        self.files = files

    def at(self, address: int) -> tuple[str, int] | None:
        """The file and line of the code at ``address``, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or self.effective[i][2] == 0:
            return None
        _, file, line = self.effective[i]
        return self.files[file], line

    def rows(self, start: int, end: int) -> list[SourceLine]:
        """Rows whose code lies in ``[start, end)``, plus the row covering ``start``.

        Where the code of a row ends without another row starting (the end of
        a sequence), the next row starts later; callers see the gap as the
        previous row's (:func:`lines_for_addresses`), as within a function.
        """
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out: list[SourceLine] = []
        while i < len(self._starts) and self._starts[i] < end:
            address, file, line = self.effective[i]
            if line != 0:
                out.append(SourceLine(max(address, start), self.files[file], line))
            i += 1
        return out


def _finish_line(table: list[list[int]], pc: int) -> None:
    """gdb's end marker (line 0) at ``pc`` in one file's table; drops that file's rows at ``pc``."""
    last_line = None
    while table:
        last_line = table[-1][1]
        if table[-1][0] != pc:
            break
        table.pop()
    if last_line is not None and last_line != 0:
        table.append([pc, 0, 1])


def _per_file_tables(rows: list[Row]) -> dict[int, list[list[int]]]:
    """Each file's ``[pc, line, is_stmt]`` entries, recorded the way gdb's DWARF reader does.

    A switch of file ends the previous file's range with a line-0 marker
    (which drops its rows at that address); a row without ``is_stmt`` that
    switches file at an address which already had an ``is_stmt`` row is
    ignored, as are rows of line 0.
    """
    tables: dict[int, list[list[int]]] = {}
    last_file: int | None = None
    last_address: int | None = None
    stmt_here = False  # an is_stmt row was seen at last_address
    for address, file, line, end, stmt in rows:
        changed = file != last_file
        same_place = address == last_address and stmt_here
        ignore = not end and ((changed and same_place and not stmt) or line == 0)
        if ((changed and not ignore) or end) and last_file is not None:
            _finish_line(tables[last_file], address)
        if end:
            last_file = last_address = None  # each sequence starts afresh
            stmt_here = False
            continue
        if not ignore:
            tables.setdefault(file, []).append([address, line, int(stmt)])
            last_file = file
        if address != last_address:
            last_address, stmt_here = address, False
        stmt_here = stmt_here or stmt
    return tables


def _pick_in_group(group: list[list[int]]) -> list[int]:
    """Of one file's entries at one address, gdb's: the last, or the last ``is_stmt`` before it."""
    k = len(group) - 1
    while k > 0 and group[k - 1][1] != 0 and not group[k][2]:
        k -= 1
    return group[k] if group[k][2] else group[-1]


def gdb_line_table(rows: list[Row]) -> list[tuple[int, int, int]]:
    """``(address, file, line)`` sorted by address, one per address, as gdb resolves them.

    The code at an address belongs to the entry with the greatest address at
    or below it; line 0 means no line (the end of a sequence).  Where several
    rows share an address, gdb keeps the last row with ``is_stmt`` set (else
    the last row) of the file in effect there.

    >>> gdb_line_table([(0x10, 1, 5, False, True), (0x10, 1, 7, False, False),
    ...                 (0x14, 1, 8, False, True), (0x18, 1, 8, True, True)])
    [(16, 1, 5), (20, 1, 8), (24, 1, 0)]
    """
    chosen: dict[int, tuple[int, int]] = {}
    for file, table in _per_file_tables(rows).items():
        table.sort(key=lambda e: (e[0], e[1] != 0))  # stable: a marker first at its address
        i = 0
        while i < len(table):
            j = i
            while j < len(table) and table[j][0] == table[i][0]:
                j += 1
            pc, line, _ = _pick_in_group(table[i:j])
            if line != 0 or pc not in chosen:  # a real row beats another file's end marker
                chosen[pc] = (file, line)
            i = j
    return [(pc, *chosen[pc]) for pc in sorted(chosen)]


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _file_names(program: Any, comp_dir: str) -> list[str]:
    """Paths of the line program's files, indexed as its rows index them.

    Paths are absolute where the unit's ``DW_AT_comp_dir`` is; a relative
    one (Debian's kernel: ``debian/build/build_amd64_none_amd64``) names a
    directory of a build machine, so paths stay relative to it, as gdb
    shows them (``mm/vmscan.c``): look them up under a source tree
    (:func:`source_text`'s ``source_dirs``).
    """
    version = program["version"]
    dirs = [_decode(d) for d in program["include_directory"]]
    base = comp_dir if os.path.isabs(comp_dir) else ""
    names = []
    for entry in program["file_entry"]:
        index = entry["dir_index"]
        if index == 0:
            directory = base  # DWARF 5's directory 0 is the compilation directory
        elif version >= 5:
            directory = dirs[index] if index < len(dirs) else ""
        else:
            directory = dirs[index - 1]
        path = os.path.join(base, directory, _decode(entry["name"]))
        names.append(os.path.normpath(path))
    # DWARF < 5 numbers files from 1; index 0 then means "no file"
    return names if version >= 5 else ["<unknown>", *names]


class _Window:
    """A read-only file-like view of ``[base, base + size)`` of a memory map.

    pyelftools reads DWARF through streams; this one copies nothing up front,
    so opening a 10 MB ``.debug_info`` costs nothing until a CU is read.
    """

    def __init__(self, data: mmap.mmap, base: int, size: int) -> None:
        self._data, self._base, self._size, self._pos = data, base, size, 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        start = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = start + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n < 0 else min(self._pos + n, self._size)
        start = self._base + self._pos
        data = self._data[start : self._base + end] if end > self._pos else b""
        self._pos = max(end, self._pos)
        return data


#: the sections line lookups need; pyelftools would read every debug section
_NEEDED = {
    "debug_info_sec": ".debug_info",
    "debug_aranges_sec": ".debug_aranges",
    "debug_abbrev_sec": ".debug_abbrev",
    "debug_str_sec": ".debug_str",
    "debug_line_sec": ".debug_line",
    "debug_line_str_sec": ".debug_line_str",
    "debug_str_offsets_sec": ".debug_str_offsets",
    "debug_addr_sec": ".debug_addr",
    "debug_ranges_sec": ".debug_ranges",
    "debug_rnglists_sec": ".debug_rnglists",
}
_UNUSED = (
    "debug_frame_sec",
    "eh_frame_sec",
    "debug_loc_sec",
    "debug_pubtypes_sec",
    "debug_pubnames_sec",
    "debug_loclists_sec",
    "debug_sup_sec",
    "gnu_debugaltlink_sec",
    "debug_types_sec",
)
_SHF_COMPRESSED = 0x800


def _section(image: ElfImage, data: mmap.mmap, name: str) -> DebugSectionDescriptor | None:
    section = image.elf.get_section_by_name(name)
    if section is None:
        return None
    if section["sh_flags"] & _SHF_COMPRESSED:
        raw = section.data()
        stream: Any = io.BytesIO(raw)
        size = len(raw)
    else:
        size = section["sh_size"]
        stream = _Window(data, section["sh_offset"], size)
    return DebugSectionDescriptor(stream, name, section["sh_offset"], size, section["sh_addr"])


def _dwarf_info(image: ElfImage) -> tuple[DWARFInfo, mmap.mmap]:
    """A DWARFInfo over only the sections needed, read in place through a memory map."""
    with open(image.path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    elf = image.elf
    config = DwarfConfig(
        little_endian=elf.little_endian,
        default_address_size=elf.elfclass // 8,
        machine_arch=elf.get_machine_arch(),
    )
    sections = {key: _section(image, data, name) for key, name in _NEEDED.items()}
    info = DWARFInfo(config=config, **sections, **dict.fromkeys(_UNUSED))
    return info, data


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def _sleb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (result - (1 << shift) if byte & 0x40 else result), i


def run_line_program(data: bytes, header: Any, little_endian: bool = True) -> list[Row]:
    """Run a DWARF line-number program: ``(address, file, line, end_sequence, is_stmt)`` rows.

    ``data`` is the program's opcodes (after its header); ``header`` the
    header fields as pyelftools parses them.  A straight loop over bytes, a
    few times faster than pyelftools' general one; VLIW op-indexes are not
    supported (no x86_64 or aarch64 compiler emits them).
    """
    min_len = header["minimum_instruction_length"]
    line_base, line_range = header["line_base"], header["line_range"]
    opcode_base = header["opcode_base"]
    lengths = header["standard_opcode_lengths"]
    default_file = 1
    default_stmt = bool(header["default_is_stmt"])
    const_add = ((255 - opcode_base) // line_range) * min_len
    order: Literal["little", "big"] = "little" if little_endian else "big"
    rows: list[Row] = []
    append = rows.append
    address, file, line, stmt = 0, default_file, 1, default_stmt
    i, n = 0, len(data)
    while i < n:
        op = data[i]
        i += 1
        if op >= opcode_base:
            adjusted = op - opcode_base
            address += (adjusted // line_range) * min_len
            line += line_base + adjusted % line_range
            append((address, file, line, False, stmt))
        elif op == 0:
            length, i = _uleb(data, i)
            sub, end = data[i], i + length
            if sub == 1:  # DW_LNE_end_sequence
                append((address, file, line, True, stmt))
                address, file, line, stmt = 0, default_file, 1, default_stmt
            elif sub == 2:  # DW_LNE_set_address
                address = int.from_bytes(data[i + 1 : end], order)
            i = end
        elif op == 1:  # DW_LNS_copy
            append((address, file, line, False, stmt))
        elif op == 2:  # DW_LNS_advance_pc
            value, i = _uleb(data, i)
            address += value * min_len
        elif op == 3:  # DW_LNS_advance_line
            value, i = _sleb(data, i)
            line += value
        elif op == 4:  # DW_LNS_set_file
            file, i = _uleb(data, i)
        elif op == 6:  # DW_LNS_negate_stmt
            stmt = not stmt
        elif op == 8:  # DW_LNS_const_add_pc
            address += const_add
        elif op == 9:  # DW_LNS_fixed_advance_pc
            address += int.from_bytes(data[i : i + 2], order)
            i += 2
        else:  # column, stmt, basic block, prologue, epilogue, isa, unknown: skip operands
            for _ in range(lengths[op - 1]):
                _value, i = _uleb(data, i)
    return rows


class DwarfLines:
    """Line information of one ELF file (or its detached debug file)."""

    def __init__(self, image: ElfImage) -> None:
        self.path = image.path
        self._image = image
        self._info: Any = None
        self._map: mmap.mmap | None = None
        self._aranges: Any = None
        self._ranges: list[tuple[int, int, int]] | None = None
        self._cus: dict[int, CULines] = {}

    @property
    def info(self) -> Any:
        """pyelftools' DWARFInfo, opened on first use."""
        if self._info is None:
            try:
                self._info, self._map = _dwarf_info(self._image)
            except (ELFError, DWARFError, KeyError, ValueError, OSError) as exc:
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
            try:
                lines = self._decode_cu(self.info.get_CU_at(cu_offset)) or CULines([], [])
            except (ELFError, DWARFError, IndexError, KeyError, ValueError) as exc:
                raise NotFound(
                    f"{self.path}: corrupt DWARF in the unit at {cu_offset:#x} ({exc}); "
                    "rebuild the file or drop --source"
                ) from None
            self._cus[cu_offset] = lines
        return lines

    def _decode_cu(self, cu: Any) -> CULines | None:
        program = self.info.line_program_for_CU(cu)
        if program is None:
            return None
        comp = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
        files = _file_names(program, _decode(comp.value) if comp else "")
        start, end = program.program_start_offset, program.program_end_offset
        section = self.info.debug_line_sec.stream
        section.seek(start)
        rows = run_line_program(
            section.read(end - start), program.header, self.info.config.little_endian
        )
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
        addresses, lines, files = table.addresses, table.lines, table.file_index
        clean = _not_closed_by_other_file(addresses, files)
        candidates = [
            (lines[i], addresses[i])
            for i in range(len(addresses))
            if clean[i]
            if table.file_index[i] in wanted
            and table.lines[i] >= line
            and table.stmts[i]
            and not table.ends[i]
        ]
        if not candidates:
            return []
        first = min(c[0] for c in candidates)
        path = table.files[min(wanted)]
        return [SourceLine(a, path, n) for n, a in candidates if n == first]


def _not_closed_by_other_file(addresses: list[int], files: list[int]) -> list[bool]:
    """Rows not followed at their address by a row of another file.

    Such a row holds no code: as in gdb, the switch of file at the same
    address closes the first file's range there (a breakpoint goes elsewhere).
    """
    clean = [True] * len(addresses)
    for i in range(len(addresses) - 2, -1, -1):
        if addresses[i + 1] == addresses[i]:
            clean[i] = files[i + 1] == files[i] and clean[i + 1]
    return clean


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
def _lines_for(path: str, mtime_ns: int) -> DwarfLines | None:
    image = open_elf(path)
    if image.is_relocatable:
        raise NotFound(
            f"{path}: a relocatable object (.o/.ko) has no final addresses for source lines; "
            "disassemble the loaded module with --kernel, or a linked file"
        )
    if image.has_section(".debug_line"):
        return DwarfLines(image)
    debug = debug_file_for(image)
    if debug is not None:
        debug_image = open_elf(debug)
        if debug_image.has_section(".debug_line"):
            return DwarfLines(debug_image)
    return None


def dwarf_lines(path: str) -> DwarfLines | None:
    """The line information of ELF ``path`` (or its debug file by build-id), or None.

    Cached per file and modification time.
    """
    real = os.path.realpath(path)
    try:
        mtime = os.stat(real).st_mtime_ns
    except OSError:
        open_elf(real)  # raises the one-line error
        raise
    return _lines_for(real, mtime)


@functools.lru_cache(maxsize=64)
def _source_file(path: str) -> tuple[str, ...] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return tuple(line.rstrip("\n") for line in f)
    except OSError:
        return None


def source_text(path: str, line: int, source_dirs: Sequence[str | Path] = ()) -> str | None:
    """Line ``line`` (1-based) of source file ``path``, or None when unreadable.

    A relative ``path`` (``mm/vmscan.c``) is looked up in each of
    ``source_dirs`` in turn (e.g. :func:`kernel_source_dir`), then as is.
    """
    candidates = [] if os.path.isabs(path) else [os.path.join(d, path) for d in source_dirs]
    for candidate in [*candidates, path]:
        lines = _source_file(candidate)
        if lines is not None:
            return lines[line - 1] if 0 < line <= len(lines) else None
    return None


# -- debug info and source of a Debian kernel (fetched by mk/debug.mk) -------------------


class Found(NamedTuple):
    """A file or directory looked for: ``path``, or None and ``reason`` (how to get it)."""

    path: Path | None
    reason: str = ""


def debug_cache() -> Path:
    """Where make setup keeps kernel debug info: $KNOCKOUT_DEBUG_CACHE, else /var/cache/knockout."""
    return Path(os.environ.get("KNOCKOUT_DEBUG_CACHE") or "/var/cache/knockout")


#: ELF note type of a GNU build-id
_NT_GNU_BUILD_ID = 3


def notes_build_id(notes: bytes) -> str | None:
    """The GNU build-id (hex) in raw ELF notes such as ``/sys/kernel/notes``, or None.

    >>> note = (4).to_bytes(4, "little") + (2).to_bytes(4, "little") + (3).to_bytes(4, "little")
    >>> notes_build_id(note + b"GNU\\0" + b"\\xab\\xcd\\0\\0")
    'abcd'
    """
    i = 0
    while i + 12 <= len(notes):
        namesz, descsz, kind = (
            int.from_bytes(notes[i + k : i + k + 4], "little") for k in (0, 4, 8)
        )
        name_at = i + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if kind == _NT_GNU_BUILD_ID and notes[name_at : name_at + namesz] == b"GNU\0":
            return notes[desc_at : desc_at + descsz].hex()
        i = desc_at + (descsz + 3) // 4 * 4
    return None


def running_kernel_build_id(path: str = "/sys/kernel/notes") -> str | None:
    """The running kernel's build-id, or None where its notes cannot be read."""
    try:
        with open(path, "rb") as f:
            return notes_build_id(f.read())
    except OSError:
        return None


def debug_vmlinux(release: str | None = None) -> Found:
    """The debug vmlinux of kernel ``release`` (default: the running one) that make setup fetched.

    For the running kernel its build-id must equal the kernel's own
    (``/sys/kernel/notes``): line tables of another build would lie.
    """
    release = release or platform.release()
    path = debug_cache() / "debug" / release / "vmlinux"
    if not path.is_file():
        return Found(
            None,
            f"no debug vmlinux for {release} at {path}; run 'make debug-vmlinux' "
            f"(Debian's linux-image-{release}-dbg); entry cuts work without it",
        )
    if release == platform.release():
        running = running_kernel_build_id()
        own = open_elf(str(path)).build_id()
        if running is not None and own is not None and running != own:
            return Found(
                None,
                f"{path} has build-id {own} but the running kernel {running}; remove it and "
                "run 'make debug-vmlinux' again",
            )
    return Found(path)


def kernel_source_dir(release: str | None = None) -> Found:
    """The unpacked linux-source tree for kernel ``release`` (default: the running one).

    ``mk/debug.mk`` unpacks Debian's ``linux-source-X.Y`` of the kernel's
    own version under ``<cache>/src/linux-source-X.Y`` and writes the release
    it serves into ``.release`` there.
    """
    release = release or platform.release()
    series = ".".join(release.split(".")[:2])
    path = debug_cache() / "src" / f"linux-source-{series}"
    try:
        serves = (path / ".release").read_text().strip()
    except OSError:
        serves = None
    if serves != release:
        have = f" (it holds {serves}'s)" if serves else ""
        return Found(
            None,
            f"no kernel source for {release} under {path}{have}; run 'make kernel-source' "
            f"(Debian's linux-source-{series})",
        )
    return Found(path)
