"""ELF files: their text symbols, their bytes at an address, their debug file.

A thin layer over pyelftools for headers and segments; the symbol table is
unpacked with :mod:`struct` in one pass, because pyelftools' per-symbol
parsing is too slow for tables of 100 000 symbols (vmlinux, libpython).

>>> image = open_elf("/bin/true")  # doctest: +SKIP
>>> image.arch.name  # doctest: +SKIP
'x86_64'
"""

from __future__ import annotations

import bisect
import functools
import os
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import NoteSection, SymbolTableSection

from knockout.arch import Arch, arch_for_elf_machine
from knockout.errors import BadInput, NotFound, Refused

__all__ = [
    "ElfImage",
    "RawSymbol",
    "debug_file_for",
    "load_bias",
    "open_elf",
    "open_file",
    "read_kcore",
]

#: where Debian/Fedora install detached debug files, by build-id
DEBUG_ROOT = "/usr/lib/debug"

_STT_FUNC, _STT_NOTYPE, _STT_GNU_IFUNC = 2, 0, 10
_FUNC_KINDS = frozenset((_STT_FUNC, _STT_GNU_IFUNC))
_SHN_UNDEF, _SHN_LORESERVE = 0, 0xFF00
_SHF_EXECINSTR = 0x4


class RawSymbol(NamedTuple):
    """A text symbol as the ELF file records it (link-time address)."""

    name: str
    address: int
    size: int
    is_global: bool


def open_file(path: str) -> BinaryIO:
    """Open ``path`` for reading, or raise a one-line error saying what to do."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory; name an ELF file") from None
    except PermissionError:
        raise Refused(f"{path}: permission denied; run as root or fix its mode") from None
    except OSError as exc:
        raise NotFound(f"{path}: cannot read ({exc.strerror}); check the path") from None


class ElfImage:
    """One opened ELF file.  Keep it alive while its data is used."""

    def __init__(self, path: str, stream: BinaryIO) -> None:
        self.path = path
        self._stream = stream
        try:
            self.elf = ELFFile(stream)
            self._segments = [
                (s["p_vaddr"], s["p_offset"], s["p_filesz"], s["p_memsz"])
                for s in self.elf.iter_segments()
                if s["p_type"] == "PT_LOAD"
            ]
        except (ELFError, struct.error, ValueError) as exc:
            raise BadInput(f"{path}: not a readable ELF file ({exc}); name an ELF file") from None

    @property
    def arch(self) -> Arch:
        """The architecture the file's ``e_machine`` names."""
        machine = self.elf["e_machine"]
        arch = arch_for_elf_machine(machine)
        if arch is None:
            raise BadInput(f"{self.path}: machine {machine} is not one knockout can disassemble")
        return arch

    @property
    def is_relocatable(self) -> bool:
        """True for ``.o`` and ``.ko`` files (their text has no final address)."""
        return bool(self.elf["e_type"] == "ET_REL")

    def has_section(self, name: str) -> bool:
        """Whether the file has a section called ``name``."""
        return self.elf.get_section_by_name(name) is not None

    def build_id(self) -> str | None:
        """The GNU build-id as hex, or None."""
        section = self.elf.get_section_by_name(".note.gnu.build-id")
        if not isinstance(section, NoteSection):
            return None
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
        return None

    def text_symbols(self) -> list[RawSymbol]:
        """Function symbols from ``.symtab``, or ``.dynsym`` when stripped.

        A symbol of size 0 (an assembly label) gets the size up to the next
        symbol of its section, or to the section's end.
        """
        try:
            for name in (".symtab", ".dynsym"):
                section = self.elf.get_section_by_name(name)
                if section is not None and section["sh_size"] > 0:
                    return self._sized(list(self._unpack_symbols(section))) + self.plt_symbols()
            return self.plt_symbols()
        except (ELFError, struct.error, ValueError, IndexError) as exc:
            raise BadInput(f"{self.path}: corrupt symbol table ({exc}); rebuild the file") from None

    def plt_symbols(self) -> list[RawSymbol]:
        """``name@plt`` for each PLT entry, as objdump and gdb name them.

        The lazy-binding PLT holds one 16-byte entry per ``.rela.plt``
        relocation, in order, after a header (x86_64: 16 bytes in ``.plt``, or
        none in ``.plt.sec`` with IBT; aarch64: 32 bytes).
        """
        relocations = self.elf.get_section_by_name(".rela.plt")
        sec = self.elf.get_section_by_name(".plt.sec")
        plt = sec or self.elf.get_section_by_name(".plt")
        arch = arch_for_elf_machine(self.elf["e_machine"])
        if not isinstance(relocations, RelocationSection) or plt is None or arch is None:
            return []
        header = arch.plt_header
        dynsym = self.elf.get_section(relocations["sh_link"])
        if not isinstance(dynsym, SymbolTableSection):
            return []
        start = plt["sh_addr"] + (0 if sec is not None else header)
        entries = self._symbol_entries(dynsym)
        strtab = self.elf.get_section(dynsym["sh_link"]).data()
        out = []
        for i, index in enumerate(self._relocation_symbols(relocations)):
            if index >= len(entries) or start + 16 * (i + 1) > plt["sh_addr"] + plt["sh_size"]:
                continue
            offset = entries[index][0]
            name = strtab[offset : strtab.index(b"\0", offset)].decode("utf-8", "replace")
            if name:
                out.append(RawSymbol(f"{name}@plt", start + 16 * i, 16, False))
        return out

    def _relocation_symbols(self, section: Any) -> list[int]:
        """The symbol index of each ``Elf64_Rela`` entry, in order (one struct pass)."""
        endian = "<" if self.elf.little_endian else ">"
        if self.elf.elfclass != 64:
            return [r["r_info_sym"] for r in section.iter_relocations()]
        return [info >> 32 for _o, info, _a in struct.iter_unpack(endian + "QQq", section.data())]

    def _sized(self, found: list[tuple[int, RawSymbol]]) -> list[RawSymbol]:
        starts: dict[int, list[int]] = {}
        for shndx, sym in found:
            starts.setdefault(shndx, []).append(sym.address)
        for addresses in starts.values():
            addresses.sort()
        out = []
        for shndx, sym in found:
            if sym.size == 0:
                addresses = starts[shndx]
                i = bisect.bisect_right(addresses, sym.address)
                end = addresses[i] if i < len(addresses) else self._section_end(shndx)
                sym = RawSymbol(sym.name, sym.address, max(end - sym.address, 0), sym.is_global)
            out.append(sym)
        return out

    def _section_end(self, index: int) -> int:
        header = self.elf.get_section(index).header
        return self._section_base(index) + int(header["sh_addr"] + header["sh_size"])

    def _section_base(self, index: int) -> int:
        """Where a section's symbols start: its address, or for ET_REL its file offset."""
        header = self.elf.get_section(index).header
        return int(header["sh_offset"] if self.is_relocatable else 0)

    def _executable_sections(self) -> set[int]:
        """Indexes of sections holding code (headers only: no section is parsed)."""
        headers = (self.elf._get_section_header(i) for i in range(self.elf.num_sections()))
        return {i for i, h in enumerate(headers) if h["sh_flags"] & _SHF_EXECINSTR}

    def _symbol_entries(self, section: Any) -> list[tuple[int, int, int, int, int]]:
        """``(st_name, st_info, st_shndx, st_value, st_size)`` of every entry."""
        endian = "<" if self.elf.little_endian else ">"
        data = section.data()
        if self.elf.elfclass == 64:
            return [
                (n, i, sh, v, sz)
                for n, i, _o, sh, v, sz in struct.iter_unpack(endian + "IBBHQQ", data)
            ]
        return [
            (n, i, sh, v, sz) for n, v, sz, i, _o, sh in struct.iter_unpack(endian + "IIIBBH", data)
        ]

    def _unpack_symbols(self, section: Any) -> Iterator[tuple[int, RawSymbol]]:
        strtab = self.elf.get_section(section["sh_link"]).data()
        executable = self._executable_sections()
        relocatable = self.is_relocatable
        bases: dict[int, int] = {}
        for st_name, st_info, st_shndx, st_value, st_size in self._symbol_entries(section):
            kind = st_info & 0xF
            if kind not in _FUNC_KINDS and not (kind == _STT_NOTYPE and st_shndx in executable):
                continue
            if st_shndx == _SHN_UNDEF or st_shndx >= _SHN_LORESERVE or not st_name:
                continue
            name = strtab[st_name : strtab.index(b"\0", st_name)].decode("utf-8", "replace")
            if name[0] == "$":  # aarch64 mapping symbols $x / $d
                continue
            base = 0
            if relocatable:
                if st_shndx not in bases:
                    bases[st_shndx] = self._section_base(st_shndx)
                base = bases[st_shndx]
            yield st_shndx, RawSymbol(name, base + st_value, st_size, (st_info >> 4) != 0)

    def read(self, address: int, size: int) -> bytes:
        """The file's bytes at link-time ``address`` (through PT_LOAD, or sections)."""
        for vaddr, offset, filesz, _memsz in self._segments:
            if vaddr <= address and address + size <= vaddr + filesz:
                return self._pread(offset + address - vaddr, size)
        if self.is_relocatable:
            return self._pread(address, size)  # symbols of ET_REL carry file offsets
        raise NotFound(
            f"{self.path}: no file bytes at {address:#x}..{address + size:#x}; "
            "is the address from another file or a runtime address?"
        )

    def _pread(self, offset: int, size: int) -> bytes:
        self._stream.seek(offset)
        data = self._stream.read(size)
        if len(data) != size:
            raise NotFound(f"{self.path}: short read at offset {offset:#x}; the file is truncated")
        return data

    def vaddr_of_offset(self, offset: int) -> int | None:
        """The link-time address of file offset ``offset`` (in a PT_LOAD segment), or None.

        perf prints a user frame's ip as an offset into its file; symbols are
        at link-time addresses (the same numbers only in a PIE linked at 0).
        """
        for vaddr, seg_offset, filesz, _memsz in self._segments:
            if seg_offset <= offset < seg_offset + filesz:
                return vaddr + offset - seg_offset
        return None

    def load_bias(self, map_start: int, map_offset: int) -> int:
        """The bias of a mapping of this file at ``map_start`` from file offset ``map_offset``.

        A runtime address is the link-time address plus the bias (0 for a
        non-PIE executable, the load base for PIE and shared libraries).
        """
        return _bias(tuple(self._segments), map_start, map_offset)


def _bias(segments: tuple[tuple[int, int, int, int], ...], map_start: int, map_offset: int) -> int:
    for vaddr, offset, filesz, _memsz in segments:
        page_offset = offset & ~0xFFF
        if page_offset <= map_offset < offset + max(filesz, 1):
            return map_start - map_offset - (vaddr - offset)
    return map_start - map_offset


#: opened ELF files kept (each holds one file descriptor)
_OPEN_FILES = 8


@functools.lru_cache(maxsize=_OPEN_FILES)
def _open_cached(path: str, mtime_ns: int) -> ElfImage:
    return ElfImage(path, open_file(path))


@functools.lru_cache(maxsize=256)
def _load_segments(path: str, mtime_ns: int) -> tuple[tuple[int, int, int, int], ...]:
    """A file's PT_LOAD segments, kept without keeping the file open."""
    with open_file(path) as stream:
        return tuple(ElfImage(path, stream)._segments)


def load_bias(path: str, map_start: int, map_offset: int) -> int:
    """:meth:`ElfImage.load_bias` of ``path`` without keeping it open (for /proc/PID/maps)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise NotFound(f"{path}: cannot read ({exc.strerror}); check the path") from None
    return _bias(_load_segments(path, mtime), map_start, map_offset)


def open_elf(path: str) -> ElfImage:
    """Open an ELF file (cached per path and modification time)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise NotFound(f"{path}: cannot read ({exc.strerror}); check the path") from None
    return _open_cached(path, mtime)


def debug_file_for(image: ElfImage, root: str = DEBUG_ROOT) -> str | None:
    """The path of ``image``'s detached debug file by build-id, if installed."""
    build_id = image.build_id()
    if not build_id or len(build_id) < 3:
        return None
    path = os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug")
    return path if os.path.exists(path) else None


def read_kcore(address: int, size: int, path: str = "/proc/kcore") -> bytes:
    """Kernel memory at ``address`` through ``/proc/kcore`` (an ELF core file)."""
    with open_file(path) as stream:
        try:
            return ElfImage(path, stream).read(address, size)
        except NotFound:
            raise NotFound(
                f"{address:#x} is not in {path}; check the address against /proc/kallsyms"
            ) from None
