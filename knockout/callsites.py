"""Call sites: from a return address on a sampled stack to the call instruction and its line.

A profile's caller frames carry return addresses
(:class:`~knockout.measure.profile.CallEdge`).  The climb needs the call
*instruction* in the caller that led to each frame: the one whose bytes hold
``return_address - 1`` (whether the unwinder reported the return address or
one byte before it), which must be a call.

>>> from knockout.listing import Disassembler
>>> from knockout.symbols import Symbol, SymbolTable
>>> code = bytes.fromhex("e8fbefffff" "c3")  # call 0x1000; ret   (at 0x2000)
>>> d = Disassembler(SymbolTable([Symbol("f", 0x2000, 6)]), lambda a, n: code[a - 0x2000:][:n],
...                  "x86_64")
>>> site = call_site(d, 0x2005)
>>> site.where, site.insn.text
('<f>', 'call 0x1000')
"""

from __future__ import annotations

from knockout.listing import DisasmLine, Disassembler

__all__ = ["call_site"]


def call_site(
    disassembler: Disassembler, return_address: int, *, source: bool = False
) -> DisasmLine | None:
    """The call instruction that returns to ``return_address``, or None if there is none."""
    found = disassembler.table.symbolize(return_address - 1)
    if found is None or found.symbol is None or not found.symbol.size:
        return None
    function = found.symbol
    for line in disassembler.lines(function.address, function.size, source=source):
        insn = line.insn
        if insn.address <= return_address - 1 < insn.end:
            return line if disassembler.arch.is_call(insn) else None
    return None
