"""An ELF file's code as a read-only target: candidates and plans without a running program.

:class:`ElfCode` offers what :func:`knockout.plan.plan_at` and
:func:`knockout.search.candidates` read from a target -- bytes, symbols,
the way cuts would be written -- from the file itself (link-time
addresses).  Listing a debug vmlinux's cut points this way needs no guest.

>>> import sys
>>> code = ElfCode(sys.executable)
>>> code.description.startswith("file "), code.code_style().jump_stub
(True, False)
"""

from __future__ import annotations

from knockout.arch import Arch, CodeStyle
from knockout.elf import open_elf
from knockout.symbols import SymbolTable, elf_symbols

__all__ = ["ElfCode"]


class ElfCode:
    """The code of ELF ``path`` at its link-time addresses, planned as ``style`` writes cuts."""

    def __init__(self, path: str, style: CodeStyle | None = None) -> None:
        self.path = path
        self._image = open_elf(path)
        self.arch: Arch = self._image.arch
        self._style = style or CodeStyle()

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def read(self, address: int, size: int) -> bytes:
        """The file's bytes at link-time ``address``."""
        return self._image.read(address, size)

    def symbols(self) -> SymbolTable:
        """The file's function symbols (with the file as their image: DWARF, unwind tables)."""
        return elf_symbols(self.path)

    def code_style(self) -> CodeStyle:
        return self._style
