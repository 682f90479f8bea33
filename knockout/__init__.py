"""knockout: find what causes a performance symptom by cutting code out of a
running kernel or process and measuring whether the symptom goes away.

The public API is re-exported here; everything else is private detail.
"""

from __future__ import annotations

from knockout.arch import Arch, get_arch, host_arch
from knockout.asm import Insn, asm, disasm
from knockout.cuts import (
    Cut,
    Identity,
    Intent,
    RawBytes,
    Return,
    SetReg,
    Skip,
    SkipCall,
)
from knockout.errors import BadInput, KnockoutError, NotFound, Refused, TargetGone, UnsafeCut
from knockout.plan import CodeStyle, plan_at, plan_cut
from knockout.symbols import (
    Location,
    Symbol,
    SymbolTable,
    elf_symbols,
    kallsyms,
    process_symbols,
)
from knockout.targets import AppliedCut, Target, cut
from knockout.targets.process import ProcessTarget

__all__ = [
    "AppliedCut",
    "Arch",
    "BadInput",
    "CodeStyle",
    "Cut",
    "Identity",
    "Insn",
    "Intent",
    "KnockoutError",
    "Location",
    "NotFound",
    "ProcessTarget",
    "RawBytes",
    "Refused",
    "Return",
    "SetReg",
    "Skip",
    "SkipCall",
    "Symbol",
    "SymbolTable",
    "Target",
    "TargetGone",
    "UnsafeCut",
    "asm",
    "cut",
    "disasm",
    "elf_symbols",
    "get_arch",
    "host_arch",
    "kallsyms",
    "plan_at",
    "plan_cut",
    "process_symbols",
]

__version__ = "0.1.0"
