"""The cut options shared by ``knockout cut`` and ``knockout trial``."""

from __future__ import annotations

import argparse
import re

from knockout.cuts import Identity, Intent, RawBytes, Return, SetReg, Skip, SkipCall
from knockout.errors import BadInput

__all__ = ["add_intent_options", "intent_from_args", "parse_hex", "parse_int"]


def parse_int(text: str) -> int:
    """``0``, ``-1``, ``0x1f``, ``0b101`` ... -> int, or a one-line BadInput."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise BadInput(f"{text!r} is not an integer; write e.g. 0, -1 or 0x1f") from None


def parse_hex(text: str) -> bytes:
    """``'d2 80 00 1c'`` / ``'d280001c'`` / ``'\\xd2\\x80'`` -> bytes, or a one-line BadInput."""
    cleaned = re.sub(r"(\\x|0x|[\s,:])", "", text)
    if not cleaned or len(cleaned) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", cleaned):
        raise BadInput(
            f"{text!r} is not hex bytes; write an even number of hex digits, e.g. 31c0c3"
        )
    return bytes.fromhex(cleaned)


def _parse_set(text: str) -> SetReg:
    reg, sep, value = text.partition("=")
    if not sep or not reg.strip():
        raise BadInput(f"--set takes REG=VALUE, e.g. --set x28=0; got {text!r}")
    return SetReg(reg.strip().lower(), parse_int(value))


def add_intent_options(parser: argparse.ArgumentParser, *, allow_aa: bool = False) -> None:
    """Add the mutually exclusive intent options to ``parser``."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--return", dest="ret", metavar="V", help="return V at the function's entry")
    group.add_argument("--set", dest="set", metavar="REG=V", help="one instruction becomes REG=V")
    group.add_argument("--skip", action="store_true", help="skip one instruction (NOPs)")
    group.add_argument(
        "--skip-call",
        nargs="?",
        const="",
        metavar="V",
        help="skip a call instruction; with V the return register gets V",
    )
    group.add_argument("--bytes", dest="raw", metavar="HEX", help="write these bytes")
    if allow_aa:
        group.add_argument(
            "--aa", action="store_true", help="A/A cut: rewrite the identical bytes (noise check)"
        )


def intent_from_args(args: argparse.Namespace) -> Intent:
    """The :data:`Intent` the parsed options name."""
    if args.ret is not None:
        return Return(parse_int(args.ret))
    if args.set is not None:
        return _parse_set(args.set)
    if args.skip:
        return Skip()
    if args.skip_call is not None:
        return SkipCall(parse_int(args.skip_call) if args.skip_call else None)
    if args.raw is not None:
        return RawBytes(parse_hex(args.raw))
    if getattr(args, "aa", False):
        return Identity()
    raise BadInput("name one of --return, --set, --skip, --skip-call, --bytes")
