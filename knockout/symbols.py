"""Symbols: name+offset <-> address, for the kernel, ELF files and processes.

Specs accepted by :meth:`SymbolTable.resolve`: ``SYMBOL``, ``SYMBOL+0x150``
(or ``+336``), ``0xADDR`` and ``file.c:LINE`` (the latter through DWARF,
see :mod:`knockout.dwarf`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Location", "Symbol", "SymbolTable"]


@dataclass(frozen=True)
class Symbol:
    """A function (or other text symbol) at its runtime address."""

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


class SymbolTable:
    """Placeholder replaced by the symbols work (issue 2)."""
