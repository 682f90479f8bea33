"""The architecture table: one entry per ISA knockout can cut.

Like pwntools' ``context.arch`` table, but an explicit value, never global
state: every function that depends on the ISA takes an :class:`Arch`, and
everything knockout knows about an ISA -- its facts (word size, ELF machine,
capstone mode, ptrace register layout, kbuild's ``ARCH=``) and its
behaviour (encoding a cut intent, what a call or a branch is, what an
entry's landing pad looks like) -- is on that entry.  Nothing outside this
package compares architecture names.

Each ISA is one module here that defines ``ARCH``, an instance of a
subclass of :class:`Arch`; the table is every such module, so adding an ISA
is adding one file (and its tests).

>>> get_arch("amd64").name
'x86_64'
>>> get_arch("arm64").insn_align
4
>>> get_arch("arm64") is get_arch("aarch64")
True
"""

from __future__ import annotations

import abc
import functools
import importlib
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from knockout.errors import BadInput
from knockout.insn import Encoded, Insn

__all__ = [
    "FLAGS",
    "Arch",
    "CodeStyle",
    "EntryPrefix",
    "RegsLayout",
    "arch_for_elf_machine",
    "arches",
    "check_range",
    "get_arch",
    "host_arch",
]


@dataclass(frozen=True)
class CodeStyle:
    """How a target writes a cut; the default writes ``new`` over ``old`` in place.

    ``jump_stub``: the target writes one jump (of the arch's
    :attr:`Arch.stub_jump_len` bytes) to a stub holding ``new``, so the cut
    covers at least that many bytes and the instructions it displaces must
    run correctly from the stub (the kernel target on x86_64).
    ``return_thunk``: where a ``ret`` must go instead (x86_64 kernels built
    with return thunks).  ``ftrace_entry``: a call at the entry (after the
    landing pad) is ftrace's call site and is never cut (kernel code).
    ``max_len``: the most bytes one cut may cover (arm64's kernel module
    writes one instruction word per cut), None for no limit.
    """

    jump_stub: bool = False
    return_thunk: int | None = None
    ftrace_entry: bool = False
    max_len: int | None = None


#: the name :meth:`Arch.reads` and :meth:`Arch.writes` give the condition flags (x86 rflags' status
#: flags, aarch64 NZCV), like a register
FLAGS = "flags"


@dataclass(frozen=True)
class EntryPrefix:
    """The instructions at a function's entry that no cut may touch."""

    #: how many instructions from the start
    count: int
    #: aarch64: the key ('a' or 'b') of a ``paciasp``/``pacibsp`` kept in the prefix
    pac: str | None = None


@dataclass(frozen=True)
class RegsLayout:
    """Where ``PTRACE_GETREGSET``/``NT_PRSTATUS`` puts the registers a cut cares about.

    Indexes of 64-bit words in the kernel's ``user_regs`` structure; None
    where the ISA has no such register there.
    """

    words: int
    pc: int
    sp: int
    ret: int
    #: the syscall number of a thread stopped in one (x86_64 ``orig_rax``)
    orig: int | None
    #: the link register, a return address (aarch64 ``x30``)
    link: int | None


@dataclass(frozen=True, eq=False)
class Arch(abc.ABC):
    """One instruction set: its facts (fields) and its behaviour (methods).

    Entries are singletons compared by identity: ``cut.arch is target.arch``.
    """

    name: str
    aliases: tuple[str, ...]
    bits: int
    endian: str  # "little" or "big"
    elf_machine: str  # pyelftools' e_machine name
    elf_machine_number: int  # the ELF header's e_machine
    llvm_triple: str
    insn_align: int  # every instruction starts at a multiple of this
    max_insn_len: int
    #: capstone 5's (CS_ARCH_*, CS_MODE_*) numbers and keystone's (KS_ARCH_*, KS_MODE_*) names
    capstone: tuple[int, int]
    keystone: tuple[str, str]
    #: the kernel build's ARCH= and the Debian cross compiler's prefix
    kbuild_arch: str
    cross_compile: str
    #: the length of the system-call instruction (``syscall`` / ``svc #0``)
    syscall_insn_len: int
    regs: RegsLayout
    #: bytes before the first lazy-binding PLT entry in ``.plt``
    plt_header: int
    #: how knockout's kernel module writes a cut on this ISA (as it reports it)
    kernel_mechanism: str
    #: the jump a jump-stub target writes (bytes), or None: cuts are written in place
    stub_jump_len: int | None
    #: general-purpose registers a ``set REG=V`` cut may name, by canonical name
    registers: frozenset[str] = field(default_factory=frozenset)
    #: bytes of a fixed-width instruction word (aarch64: 4), None for variable-length ISAs
    word_bytes: int | None = None

    def word_of(self, data: bytes) -> str | None:
        """The instruction word ``data`` holds, as the manuals write it (``0xd280001c``)."""
        if self.word_bytes is None or len(data) != self.word_bytes:
            return None
        order: Literal["little", "big"] = "little" if self.endian == "little" else "big"
        return f"{int.from_bytes(data, order):#0{2 + 2 * self.word_bytes}x}"

    def words_to_bytes(self, words: Sequence[int]) -> bytes:
        """Instruction words (``0xd280001c``) as the bytes in memory (fixed-width ISAs only)."""
        if self.word_bytes is None:
            raise BadInput(
                f"{self.name} has no fixed instruction words; give the bytes with --hex"
            )
        out = bytearray()
        for w in words:
            if not 0 <= w < 1 << (8 * self.word_bytes):
                raise BadInput(f"{w:#x} is not a {8 * self.word_bytes}-bit {self.name} word")
            out += w.to_bytes(self.word_bytes, "little" if self.endian == "little" else "big")
        return bytes(out)

    def __str__(self) -> str:
        return self.name

    # --- encoding the cut intents ------------------------------------------------

    @abc.abstractmethod
    def nops(self, n: int) -> bytes:
        """``n`` bytes of the ISA's canonical NOPs (refuses a length it cannot fill)."""

    @abc.abstractmethod
    def parse_reg(self, reg: str) -> tuple[int, int]:
        """``(number, bits)`` of a general-purpose register, or BadInput naming the valid ones."""

    @abc.abstractmethod
    def set_register(self, reg: str, value: int) -> list[Encoded]:
        """``reg = value`` in place of one instruction (refuses what one cannot hold)."""

    @abc.abstractmethod
    def encode_return(
        self, value: int, at: int, prefix: EntryPrefix, style: CodeStyle
    ) -> list[Encoded]:
        """``return value`` placed at ``at``, just after the entry ``prefix``."""

    @abc.abstractmethod
    def skip_call(self, value: int | None) -> list[Encoded]:
        """What replaces a call: nothing, or the return register set to ``value``."""

    @abc.abstractmethod
    def fit_hint(self, what: str, needed: int, room: int) -> str:
        """What to do when ``what`` ("set" or "skip-call") needs ``needed`` bytes in ``room``."""

    @abc.abstractmethod
    def jump(self, source: int, destination: int) -> Encoded:
        """An unconditional jump at ``source`` to ``destination`` (refuses one out of reach)."""

    @abc.abstractmethod
    def relocate(self, code: Sequence[Insn], to: int) -> bytes:
        """The bytes of ``code`` moved to ``to``, relative branches re-aimed where possible."""

    @abc.abstractmethod
    def force_branch(self, insn: Insn, taken: bool, style: CodeStyle) -> list[Encoded]:
        """What replaces the conditional branch ``insn``: a jump to its target, or nothing.

        The planner pads with NOPs; written as a ``style.jump_stub`` target
        runs it (from a stub), the jump is one :meth:`relocate` re-aims.
        """

    @abc.abstractmethod
    def encode_return_at(
        self,
        value: int | None,
        at: int,
        epilogue: int,
        style: CodeStyle,
        pop: int = 0,
        replay: Sequence[Encoded] = (),
    ) -> list[Encoded]:
        """The return register set to ``value`` (None: left alone), the stack pointer raised by
        ``pop`` bytes (locals the epilogue would have freed), the ``replay`` instructions (the
        epilogue's restores the jump skips), then a jump to ``epilogue``."""

    @abc.abstractmethod
    def compact_zero(self, reg: str) -> list[Encoded] | None:
        """``reg = 0`` shorter than :meth:`set_register`'s but clobbering the flags, or None."""

    # --- reading code ----------------------------------------------------------------

    @abc.abstractmethod
    def is_call(self, insn: Insn) -> bool:
        """A call of any form (direct or indirect)."""

    @abc.abstractmethod
    def branch_target(self, insn: Insn) -> int | None:
        """The destination of a direct branch or call, else None."""

    @abc.abstractmethod
    def is_indirect_jump(self, insn: Insn) -> bool:
        """A jump through a register or memory (a jump table may land anywhere)."""

    @abc.abstractmethod
    def ends_flow(self, insn: Insn) -> bool:
        """Execution never falls through ``insn`` (return, jump, trap)."""

    @abc.abstractmethod
    def is_breakpoint(self, insn: Insn) -> bool:
        """``insn`` is somebody's breakpoint (a debugger's or a kprobe's)."""

    @abc.abstractmethod
    def position_dependence(self, insn: Insn) -> str | None:
        """Why ``insn`` cannot be copied elsewhere verbatim, or None if it can."""

    @abc.abstractmethod
    def can_relocate(self, insn: Insn) -> bool:
        """Whether :meth:`relocate` re-aims ``insn`` (a position-dependent one)."""

    @abc.abstractmethod
    def stub_refusal(self, insn: Insn) -> str | None:
        """Why ``insn`` may not run from a jump stub (a call, a trap), or None."""

    @abc.abstractmethod
    def entry_prefix(self, insns: Sequence[Insn], style: CodeStyle) -> EntryPrefix:
        """The landing pad, ftrace site and pointer authentication at a function's entry."""

    # --- what the search reads in code (knockout.search) ------------------------------

    @abc.abstractmethod
    def is_return(self, insn: Insn) -> bool:
        """A return instruction (a jump to a return thunk is the planner's business)."""

    @abc.abstractmethod
    def is_conditional_branch(self, insn: Insn) -> bool:
        """A direct conditional branch (x86 jcc, aarch64 b.cond/cbz/cbnz/tbz/tbnz)."""

    @abc.abstractmethod
    def is_padding(self, insn: Insn) -> bool:
        """Filler the compiler puts where no code runs (NOPs, traps)."""

    @abc.abstractmethod
    def restores_only(self, insn: Insn) -> bool:
        """``insn`` may stand in an epilogue: it only restores callee-saved registers or the stack.

        It writes no memory and not the return register, and reads memory
        only from the stack: run from any point with the same stack state
        it restores the same values.
        """

    @abc.abstractmethod
    def writes_only_return(self, insn: Insn) -> bool:
        """``insn`` writes the return register and nothing else (the flags aside), no memory:
        a return value set inside an epilogue, which a "return at P" cut skips."""

    @abc.abstractmethod
    def pushed_register(self, insn: Insn) -> str | None:
        """The register ``insn`` saves by pushing it on the stack (x86 ``push``), or None."""

    @abc.abstractmethod
    def popped_register(self, insn: Insn) -> str | None:
        """The register ``insn`` restores by popping it off the stack (x86 ``pop``), or None."""

    @abc.abstractmethod
    def stack_register(self) -> str:
        """The stack pointer's canonical name (``rsp``, ``sp``)."""

    @abc.abstractmethod
    def return_register(self) -> str:
        """The register a function returns an integer or pointer in (canonical name)."""

    @abc.abstractmethod
    def loaded_register(self, insn: Insn) -> str | None:
        """The register a plain load from memory writes (named as :meth:`set_register` takes it)."""

    @abc.abstractmethod
    def canonical_register(self, name: str) -> str | None:
        """The full register ``name`` is part of (``eax`` -> ``rax``, ``w0`` -> ``x0``), or None."""

    @abc.abstractmethod
    def reads(self, insn: Insn) -> frozenset[str]:
        """Registers (canonical names, :data:`FLAGS` for the flags) ``insn`` reads."""

    @abc.abstractmethod
    def writes(self, insn: Insn) -> frozenset[str]:
        """Registers ``insn`` overwrites entirely; a partial write (``mov al``, ``inc``'s flags)
        counts as a read too."""

    @abc.abstractmethod
    def dwarf_register(self, number: int) -> str:
        """The canonical name of DWARF register ``number`` (``rsp``, ``x30``, else ``dwarfN``)."""

    # --- processes and kernels -------------------------------------------------------

    @abc.abstractmethod
    def may_restart_syscall(self, orig: int | None) -> bool:
        """Whether a thread whose return register holds -ERESTART* may re-run its syscall."""

    @abc.abstractmethod
    def kernel_code_style(
        self,
        kernel_symbol: Callable[[str], int | None],
        read_pointer: Callable[[int], int | None],
        read_text: Callable[[int, int], bytes],
    ) -> CodeStyle:
        """How knockout's kernel module writes cuts on this ISA.

        ``kernel_symbol(name)`` is a symbol's address from kallsyms (any
        type), ``read_pointer(address)`` reads a kernel pointer (None when
        kernel memory cannot be read), ``read_text(address, size)`` reads
        live kernel text (as the kernel patched it at boot).
        """


def check_range(value: int, bits: int, what: str) -> int:
    """``value`` as an unsigned ``bits``-bit pattern, or BadInput naming the range.

    Both signed and unsigned spellings are accepted: ``-1`` and ``0xff`` are
    the same 8-bit pattern.

    >>> hex(check_range(-1, 8, "al"))
    '0xff'
    """
    low, high = -(1 << (bits - 1)), (1 << bits) - 1
    if not low <= value <= high:
        raise BadInput(
            f"{value:#x} does not fit {what} ({bits} bits); use a value in {low:#x}..{high:#x}"
        )
    return value & ((1 << bits) - 1)


@functools.cache
def arches() -> tuple[Arch, ...]:
    """The table: every ``ARCH`` defined by a module of this package, in name order.

    >>> [a.name for a in arches()]
    ['aarch64', 'x86_64']
    """
    found = []
    here = os.path.dirname(__file__)
    names = sorted(n[:-3] for n in os.listdir(here) if n.endswith(".py") and n[0] != "_")
    for name in names:
        entry = getattr(importlib.import_module(f"{__name__}.{name}"), "ARCH", None)
        if isinstance(entry, Arch):
            found.append(entry)
    return tuple(found)


def get_arch(name: str | Arch) -> Arch:
    """Return the table entry for an architecture name or alias (case-insensitive)."""
    if isinstance(name, Arch):
        return name
    wanted = name.strip().lower()
    for arch in arches():
        if wanted in arch.aliases:
            return arch
    known = ", ".join(a for arch in arches() for a in arch.aliases)
    raise BadInput(f"unknown architecture {name!r}; use one of: {known}")


def host_arch() -> Arch:
    """The architecture this Python runs on."""
    return get_arch(platform.machine())


def arch_for_elf_machine(machine: str | int) -> Arch | None:
    """The entry for an ELF ``e_machine`` (pyelftools' name or the header's number)."""
    for arch in arches():
        if machine in (arch.elf_machine, arch.elf_machine_number):
            return arch
    return None
