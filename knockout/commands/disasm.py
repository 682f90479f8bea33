"""``knockout disasm``: instructions of a function, like gdb's ``disassemble /s``.

    knockout disasm shrink_slab --source            # the live kernel (default)
    knockout disasm burn --elf ./app --source --json
    knockout disasm main+0x10 --pid 1234
    knockout disasm --arch arm64 --hex 1c0080d2c0035fd6 --vma 0x1000

Bytes come from the ELF file (``--elf``), the process's memory (``--pid``,
read-only through ``/proc/PID/mem``) or the live kernel (``/proc/kcore``, else
knockout's kernel target).  ``--kernel --elf vmlinux`` reads the live kernel
and takes source lines from the debug vmlinux, shifted by the KASLR offset.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from knockout.arch import Arch, get_arch, host_arch
from knockout.asm import Insn, disasm
from knockout.commands._cutopts import parse_hex, parse_int
from knockout.dwarf import SourceLine, dwarf_lines, lines_for_addresses, source_text
from knockout.elf import open_elf, read_kcore
from knockout.errors import BadInput, KnockoutError, NotFound, Refused
from knockout.symbols import (
    Image,
    Location,
    Symbol,
    SymbolTable,
    elf_symbols,
    kallsyms,
    process_symbols,
)

__all__ = ["DisasmLine", "disassemble", "register", "render_json", "render_text"]

Reader = Callable[[int, int], bytes]

#: largest function read whole; beyond it the size is surely wrong (say --length)
MAX_FUNCTION = 1 << 20
DEFAULT_LENGTH = 64

_X86_BRANCH = re.compile(r"^(call|j[a-z]+|loop[a-z]*)$")
_ARM_BRANCH = re.compile(r"^(b|bl|b\.[a-z]+|cbn?z|tbn?z)$")
_TARGET = re.compile(r"#?(0x[0-9a-f]+|\d+)$")


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
        """The ``--json`` record of this instruction."""
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


def _decode_all(data: bytes, arch: Arch, vma: int) -> list[Insn]:
    """Decode all of ``data``; bytes capstone cannot decode become ``(bad)``."""
    out: list[Insn] = []
    offset = 0
    while offset < len(data):
        chunk = disasm(data[offset:], arch, vma + offset)
        out.extend(chunk)
        offset = chunk[-1].end - vma if chunk else offset
        if offset < len(data):
            step = min(arch.insn_align, len(data) - offset)
            out.append(Insn(vma + offset, data[offset : offset + step], "(bad)", ""))
            offset += step
    return out


def _branch_target(insn: Insn, arch: Arch) -> int | None:
    pattern = _X86_BRANCH if arch.name == "x86_64" else _ARM_BRANCH
    if not pattern.match(insn.mnemonic):
        return None
    match = _TARGET.search(insn.op_str)
    return int(match[1], 0) if match else None


def disassemble(
    table: SymbolTable,
    start: int,
    size: int,
    read: Reader,
    arch: Arch,
    *,
    source: bool = False,
) -> list[DisasmLine]:
    """Decode ``size`` bytes at ``start`` read through ``read``, annotated from ``table``.

    The bytes are read every time; what was decoded from the same bytes at the
    same address with the same table is reused (the search loops re-read a
    function after every cut, and mostly find it unchanged).  The result is
    shared: do not modify it.
    """
    data = read(start, size)
    key = (id(table), arch.name, start, data, source)
    cached = _MEMO.get(key)
    if cached is not None and cached[0] is table:
        return cached[1]
    lines = _annotate(table, start, data, arch, source)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = (table, lines)
    return lines


#: decoded functions by (table, arch, address, bytes, source); the table is kept
#: in the value so that its id cannot be reused while the entry lives
_MEMO: dict[tuple[int, str, int, bytes, bool], tuple[SymbolTable, list[DisasmLine]]] = {}
_MEMO_SIZE = 32


def _annotate(
    table: SymbolTable, start: int, data: bytes, arch: Arch, source: bool
) -> list[DisasmLine]:
    size = len(data)
    insns = _decode_all(data, arch, start)
    rows = _source_rows(table, start, start + size) if source else []
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
        target = _branch_target(insn, arch)
        out.append(
            DisasmLine(insn, symbol, offset, row, None if target is None else locate(target))
        )
    return out


def _source_rows(table: SymbolTable, start: int, end: int) -> list[SourceLine]:
    """Line rows for runtime ``[start, end)``; a one-line error when there is no DWARF."""
    image = table.image_for(start)
    lines = dwarf_lines(image.path) if image else None
    if image is None or lines is None:
        where = image.path if image else table.description
        raise NotFound(
            f"--source: no DWARF line information for {where}; build with -g, install the "
            "-dbg/-dbgsym package, or pass --elf a vmlinux/ELF with debug info"
        )
    bias = image.bias
    return [
        SourceLine(r.address + bias, r.file, r.line) for r in lines.rows(start - bias, end - bias)
    ]


# --- rendering ------------------------------------------------------------------


def render_json(lines: list[DisasmLine]) -> str:
    """The ``--json`` output: a list of instruction records."""
    return json.dumps([line.as_json() for line in lines], indent=1)


def render_text(lines: list[DisasmLine], mark: int | None = None) -> list[str]:
    """gdb-like text: ``=>`` marks ``mark``; source headings where the line changes."""
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
                out.extend(_source_block(row, shown))
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
        append(
            f"{'=>' if address == mark else '  '} {address:#018x}{where}:\t"
            f"{insn.data.hex(' ').ljust(width)}\t{text}"
        )
    return out


def _source_block(row: SourceLine, shown: dict[str, int]) -> list[str]:
    """The heading and source text printed when the source line changes."""
    highest = shown.get(row.file, 0)
    first = highest + 1 if 0 < row.line - highest <= 8 else row.line
    text = [(n, source_text(row.file, n)) for n in range(first, row.line + 1)]
    if text[-1][1] is None:
        return [f"{row.file}:{row.line}"]
    shown[row.file] = max(highest, row.line)
    return [f"{row.file}:{row.line}"] + [f"{n}\t{t}" for n, t in text if t is not None]


# --- where the bytes and symbols come from -----------------------------------------


def _pid_reader(pid: int) -> Reader:
    path = f"/proc/{pid}/mem"

    def read(address: int, size: int) -> bytes:
        try:
            with open(path, "rb", buffering=0) as mem:
                mem.seek(address)
                data = mem.read(size)
        except FileNotFoundError:
            raise NotFound(f"no process {pid}; check the pid with ps") from None
        except PermissionError:
            raise Refused(f"cannot read {path}; run as root or as the process's owner") from None
        except OSError:
            raise NotFound(f"{address:#x} is not mapped in pid {pid}; check the address") from None
        if len(data) != size:
            raise NotFound(
                f"only {len(data)} of {size} bytes at {address:#x} are mapped in pid {pid}"
            )
        return data

    return read


def _kernel_reader() -> Reader:
    """``/proc/kcore`` where it exists, else knockout's kernel target."""
    if os.path.exists("/proc/kcore"):
        return read_kcore
    try:
        module = importlib.import_module("knockout.targets.kernel")
    except ImportError:
        raise NotFound(
            "no /proc/kcore on this kernel and knockout's kernel target is not available; "
            "pass --elf vmlinux to read the text from the file"
        ) from None
    try:
        target = module.KernelTarget(load=False)  # reading must not load a module
    except KnockoutError as exc:
        raise NotFound(
            f"no /proc/kcore on this kernel and the kernel target cannot read text: {exc}; "
            "or pass --elf vmlinux"
        ) from None
    read: Reader = target.read
    return read


def _lazy(make: Callable[[], Reader]) -> Reader:
    """A reader made on first use, so that a bad SPEC is reported before the source."""
    made: list[Reader] = []

    def read(address: int, size: int) -> bytes:
        if not made:
            made.append(make())
        return made[0](address, size)

    return read


def _with_vmlinux(table: SymbolTable, vmlinux: str) -> SymbolTable:
    """kallsyms plus a debug vmlinux for source lines, shifted by the KASLR offset."""
    offset = table.lookup("_text").address - elf_symbols(vmlinux).lookup("_text").address
    return SymbolTable(table.symbols, [Image(vmlinux, offset)], description=table.description)


def _source(args: argparse.Namespace) -> tuple[SymbolTable, Reader, Arch]:
    """The symbol table, byte reader and architecture the options name."""
    if args.pid is not None:
        if args.elf is not None or args.kernel:
            raise BadInput("--pid reads a process; drop --elf/--kernel")
        pid = parse_int(args.pid)
        return process_symbols(pid), _pid_reader(pid), host_arch()
    if args.elf is not None and not args.kernel:
        image = open_elf(args.elf)
        return elf_symbols(args.elf), image.read, image.arch
    table = kallsyms(args.kallsyms)
    if args.elf is not None:
        table = _with_vmlinux(table, args.elf)
    return table, _lazy(_kernel_reader), host_arch()


def _extent(location: Location, length: int | None) -> tuple[int, int]:
    """Start and size to decode: the whole function around ``location``, or ``length``."""
    symbol = location.symbol
    if length is not None:
        return location.address, length
    if symbol is None or symbol.size == 0:
        return location.address, DEFAULT_LENGTH
    if symbol.size > MAX_FUNCTION:
        raise BadInput(
            f"{symbol.name} claims {symbol.size} bytes, more than a function has; "
            "pass --length BYTES"
        )
    return symbol.address, symbol.size


def cmd_disasm(args: argparse.Namespace) -> int:
    """Run ``knockout disasm``."""
    if args.hex is not None:
        return _cmd_raw(args)
    if args.spec is None:
        raise BadInput("name what to disassemble: SPEC (e.g. shrink_slab) or --arch A --hex HEX")
    length = parse_int(args.length) if args.length is not None else None
    if length is not None and length <= 0:
        raise BadInput(f"--length {length}: give a positive number of bytes")
    table, read, arch = _source(args)
    try:
        location = table.resolve(args.spec)
    except NotFound as exc:
        if args.kernel or args.elf or args.pid:
            raise
        raise NotFound(
            f"{exc} (the live kernel; for user code pass --elf FILE or --pid PID)"
        ) from None
    start, size = _extent(location, length)
    lines = disassemble(table, start, size, read, arch, source=args.source)
    _emit(args, lines, location.address)
    return 0


def _cmd_raw(args: argparse.Namespace) -> int:
    if args.arch is None:
        raise BadInput("--hex needs --arch (x86_64 or aarch64)")
    arch = get_arch(args.arch)
    data = parse_hex(args.hex)
    vma = parse_int(args.vma) if args.vma is not None else 0
    table = SymbolTable([], description="raw bytes")
    lines = disassemble(table, vma, len(data), lambda a, n: data[a - vma : a - vma + n], arch)
    _emit(args, lines, None)
    return 0


def _emit(args: argparse.Namespace, lines: list[DisasmLine], mark: int | None) -> None:
    if args.json:
        print(render_json(lines))
        return
    text = render_text(lines, mark)
    sys.stdout.write("\n".join(text) + "\n")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout disasm`` to the command line."""
    p = subparsers.add_parser(
        "disasm",
        help="disassemble a function (with source lines), or raw bytes",
        description="Disassemble like gdb's 'disassemble /s': addresses, <symbol+off>, "
        "bytes, instructions and, with --source, the source lines.",
    )
    p.add_argument(
        "spec", nargs="?", help="SYMBOL, SYMBOL+0x150, SYMBOL@MODULE, 0xADDR or file.c:LINE"
    )
    where = p.add_argument_group("where the bytes come from (default: the live kernel)")
    where.add_argument("--elf", metavar="FILE", help="an ELF file (with --kernel: a debug vmlinux)")
    where.add_argument("--pid", metavar="PID", help="a running process's memory")
    where.add_argument("--kernel", action="store_true", help="the live kernel")
    where.add_argument(
        "--kallsyms", metavar="FILE", default="/proc/kallsyms", help=argparse.SUPPRESS
    )
    p.add_argument("--source", action="store_true", help="interleave source lines (DWARF)")
    p.add_argument("--json", action="store_true", help="a JSON list of instructions")
    p.add_argument("--length", metavar="BYTES", help="decode this many bytes from SPEC")
    raw = p.add_argument_group("raw bytes")
    raw.add_argument("--arch", metavar="A", help="x86_64/amd64 or aarch64/arm64")
    raw.add_argument("--hex", metavar="HEX", help="bytes to decode, e.g. 1c0080d2c0035fd6")
    raw.add_argument("--vma", metavar="ADDR", help="address of the first byte (default 0)")
    p.set_defaults(func=cmd_disasm)
