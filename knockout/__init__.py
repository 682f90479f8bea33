"""knockout: find what causes a performance symptom by cutting code out of a
running kernel or process and measuring whether the symptom goes away.

The public API is re-exported here (each name imported on first use);
everything else is private detail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# eager, and first: the module knockout.asm must not shadow the function asm
from knockout.asm import Insn, asm, disasm

if TYPE_CHECKING:
    from knockout.arch import Arch, get_arch, host_arch
    from knockout.cuts import (
        Cut,
        ForceBranch,
        Identity,
        Intent,
        RawBytes,
        Return,
        ReturnAt,
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
    "ForceBranch",
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
    "ReturnAt",
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


#: public name -> the module that defines it (imported on first use: a CLI
#: command pays only for what it uses)
_HOME = {
    "AppliedCut": "knockout.targets",
    "Arch": "knockout.arch",
    "BadInput": "knockout.errors",
    "CodeStyle": "knockout.plan",
    "Cut": "knockout.cuts",
    "ForceBranch": "knockout.cuts",
    "Identity": "knockout.cuts",
    "Intent": "knockout.cuts",
    "KnockoutError": "knockout.errors",
    "Location": "knockout.symbols",
    "NotFound": "knockout.errors",
    "ProcessTarget": "knockout.targets.process",
    "RawBytes": "knockout.cuts",
    "Refused": "knockout.errors",
    "Return": "knockout.cuts",
    "ReturnAt": "knockout.cuts",
    "SetReg": "knockout.cuts",
    "Skip": "knockout.cuts",
    "SkipCall": "knockout.cuts",
    "Symbol": "knockout.symbols",
    "SymbolTable": "knockout.symbols",
    "Target": "knockout.targets",
    "TargetGone": "knockout.errors",
    "UnsafeCut": "knockout.errors",
    "cut": "knockout.targets",
    "elf_symbols": "knockout.symbols",
    "get_arch": "knockout.arch",
    "host_arch": "knockout.arch",
    "kallsyms": "knockout.symbols",
    "plan_at": "knockout.plan",
    "plan_cut": "knockout.plan",
    "process_symbols": "knockout.symbols",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'knockout' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
