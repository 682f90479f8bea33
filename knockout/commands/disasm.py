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
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from knockout.arch import Arch, get_arch, host_arch
from knockout.errors import BadInput, KnockoutError, NotFound
from knockout.spelling import parse_hex, parse_int, parse_words

if TYPE_CHECKING:  # imported when the command runs
    from knockout.listing import DisasmLine, Disassembler, Reader
    from knockout.symbols import Location, SymbolTable

__all__ = ["cmd_disasm", "register"]

#: largest function read whole; beyond it the size is surely wrong (say --length)
MAX_FUNCTION = 1 << 20
DEFAULT_LENGTH = 64


def _kernel_reader(kcore: str = "/proc/kcore") -> Reader:
    """The live kernel's text: ``/proc/kcore`` where it exists, else knockout's module.

    Reading ``/proc/kcore`` needs no module: the kernel target (which opens
    ``/proc/knockout``) is only the fallback.
    """
    from knockout.targets.kernel import KernelTarget

    if os.access(kcore, os.R_OK):
        from knockout.elf import read_kcore

        return lambda address, size: read_kcore(address, size, kcore)
    try:
        target = KernelTarget(load=False)  # reading must not load a module
    except KnockoutError as exc:
        raise NotFound(
            f"no /proc/kcore to read the live kernel, and knockout's module cannot read it "
            f"either ({exc}); or pass --elf vmlinux"
        ) from None
    return target.read


def _lazy(make: Callable[[], Reader]) -> Reader:
    """A reader made on first use, so that a bad SPEC is reported before the source."""
    made: list[Reader] = []

    def read(address: int, size: int) -> bytes:
        if not made:
            made.append(make())
        return made[0](address, size)

    return read


def _source(args: argparse.Namespace) -> tuple[SymbolTable, Reader, Arch]:
    """The symbol table, byte reader and architecture the options name."""
    from knockout.symbols import elf_symbols, kallsyms, with_debug_image

    if args.pid is not None:
        if args.elf is not None or args.kernel:
            raise BadInput("--pid reads a process; drop --elf/--kernel")
        from knockout.targets.process import ProcessTarget

        process = ProcessTarget(parse_int(args.pid))
        return process.symbols(), process.read, process.arch
    if args.elf is not None and not args.kernel:
        from knockout.elf import open_elf

        image = open_elf(args.elf)
        return elf_symbols(args.elf), image.read, image.arch
    table = kallsyms(args.kallsyms)
    if args.elf is not None:
        table = with_debug_image(table, args.elf)
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
    if args.hex is not None or args.words is not None:
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
    from knockout.listing import Disassembler

    disassembler = Disassembler(table, read, arch, source_dirs=args.source_dir)
    _emit(args, disassembler, disassembler.lines(start, size, source=args.source), location.address)
    return 0


def _cmd_raw(args: argparse.Namespace) -> int:
    what = "--hex" if args.hex is not None else "--words"
    if args.hex is not None and args.words is not None:
        raise BadInput("give the code once: --hex BYTES or --words WORDS")
    if args.arch is None:
        raise BadInput(f"{what} needs --arch (x86_64 or aarch64)")
    arch = get_arch(args.arch)
    if args.words is not None:
        data = arch.words_to_bytes(parse_words(args.words))
    else:
        data = parse_hex(args.hex)
    vma = parse_int(args.vma) if args.vma is not None else 0
    from knockout.listing import Disassembler
    from knockout.symbols import SymbolTable

    table = SymbolTable([], description="raw bytes")
    disassembler = Disassembler(table, lambda a, n: data[a - vma : a - vma + n], arch)
    _emit(args, disassembler, disassembler.lines(vma, len(data)), None)
    return 0


def _emit(
    args: argparse.Namespace, disassembler: Disassembler, lines: list[DisasmLine], mark: int | None
) -> None:
    if args.json:
        print(json.dumps([line.as_json() for line in lines], indent=1))
        return
    from knockout.listing import render_text

    text = render_text(lines, mark, disassembler.source_text, disassembler.arch)
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
    p.add_argument(
        "--source-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="where to look for source files the debug info names by a relative path "
        "(repeatable; e.g. an unpacked linux-source tree)",
    )
    p.add_argument("--json", action="store_true", help="a JSON list of instructions")
    p.add_argument("--length", metavar="BYTES", help="decode this many bytes from SPEC")
    raw = p.add_argument_group("raw bytes")
    raw.add_argument("--arch", metavar="A", help="x86_64/amd64 or aarch64/arm64")
    raw.add_argument("--hex", metavar="HEX", help="bytes to decode, e.g. 1c0080d2c0035fd6")
    raw.add_argument(
        "--words",
        metavar="W,W",
        help="instruction words of a fixed-width ISA, as manuals write them, "
        "e.g. --arch arm64 --words 0xd280001c,0xd65f03c0",
    )
    raw.add_argument("--vma", metavar="ADDR", help="address of the first byte (default 0)")
    p.set_defaults(func=cmd_disasm)
