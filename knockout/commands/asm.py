"""``knockout asm``: assemble text and show the bytes with their disassembly.

    knockout asm --arch arm64 'mov x28, #0; ret'
    knockout asm --arch x86_64 'jmp 0x1000' --vma 0x2000 --json

Statements are separated by ``;`` or newlines; x86_64 takes Intel syntax.
"""

from __future__ import annotations

import argparse
import json

from knockout.arch import Arch, get_arch, host_arch
from knockout.asm import Insn, asm, disasm
from knockout.spelling import parse_int

__all__ = ["cmd_asm", "register", "render_json", "render_text"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout asm`` to the CLI."""
    parser = sub.add_parser(
        "asm",
        help="assemble instructions and show their bytes",
        description="Assemble TEXT (statements separated by ';' or newlines; Intel syntax on "
        "x86_64) and print the bytes in hex, then their disassembly.",
    )
    parser.add_argument("text", metavar="TEXT", help="e.g. 'mov x28, #0; ret'")
    parser.add_argument(
        "--arch", default=None, help="x86_64/amd64 or aarch64/arm64 (default: host)"
    )
    parser.add_argument("--vma", default="0", help="address the code will sit at (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=cmd_asm)


def render_text(data: bytes, insns: list[Insn], arch: Arch | None = None) -> str:
    """The hex bytes on one line, then ``address: bytes  [word]  text`` per instruction."""
    width = max(i.size for i in insns) * 2 if insns else 0
    lines = [data.hex()]
    for i in insns:
        word = arch.word_of(i.data) if arch is not None else None
        middle = f"  {word}" if word else ""
        lines.append(f"{i.address:#x}: {i.data.hex():<{width}}{middle}  {i.text}")
    return "\n".join(lines)


def render_json(arch: Arch, vma: int, data: bytes, insns: list[Insn]) -> str:
    """One JSON object: arch, vma, hex and the decoded instructions."""
    return json.dumps(
        {
            "arch": arch.name,
            "vma": vma,
            "hex": data.hex(),
            "instructions": [
                {"address": i.address, "bytes": i.data.hex(), "text": i.text} for i in insns
            ],
        }
    )


def cmd_asm(args: argparse.Namespace) -> int:
    """``knockout asm``."""
    arch = get_arch(args.arch) if args.arch else host_arch()
    vma = parse_int(args.vma)
    data = asm(args.text, arch, vma)
    insns = disasm(data, arch, vma)
    print(render_json(arch, vma, data, insns) if args.json else render_text(data, insns, arch))
    return 0
