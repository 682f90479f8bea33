"""The cut options shared by ``knockout cut`` and ``knockout trial``."""

from __future__ import annotations

import argparse

from knockout.cuts import (
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
from knockout.errors import BadInput
from knockout.spelling import parse_hex, parse_int

__all__ = ["add_intent_options", "intent_from_args"]


def _parse_set(text: str) -> SetReg:
    reg, sep, value = text.partition("=")
    if not sep or not reg.strip():
        raise BadInput(f"--set takes REG=VALUE, e.g. --set x28=0; got {text!r}")
    return SetReg(reg.strip().lower(), parse_int(value))


def add_intent_options(
    parser: argparse.ArgumentParser, *, allow_aa: bool = False, required: bool = True
) -> None:
    """Add the mutually exclusive intent options to ``parser``."""
    group = parser.add_mutually_exclusive_group(required=required)
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
    group.add_argument(
        "--return-at",
        nargs="?",
        const="",
        metavar="V",
        help="return V from this instruction (a jump to an epilogue with its stack state); "
        "without V, 0 or NULL as the DWARF return type says",
    )
    group.add_argument(
        "--force-branch",
        choices=("taken", "not-taken"),
        help="make this conditional branch always (or never) taken",
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
    if args.return_at is not None:
        return ReturnAt(parse_int(args.return_at) if args.return_at else None)
    if args.force_branch is not None:
        return ForceBranch(args.force_branch == "taken")
    if args.raw is not None:
        return RawBytes(parse_hex(args.raw))
    if getattr(args, "aa", False):
        return Identity()
    raise BadInput(
        "name one of --return, --return-at, --set, --skip, --skip-call, --force-branch, --bytes"
    )
