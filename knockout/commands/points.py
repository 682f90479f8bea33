"""``knockout points FUNC (--pid PID | --kernel | --elf FILE)``: where a function can be cut.

Every cut point of one function, in program order, as :mod:`knockout.search`
plans them: ``return V`` at the entry, "return at P" where the unwind
tables allow it, each call skipped, each branch forced, each load forced to
0 -- the refused ones with their reason.  Nothing is written.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from knockout.commands._target import open_target, search_rules
from knockout.errors import BadInput

__all__ = ["cmd_points", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout points``."""
    from knockout.cuts import POINT_KINDS as KINDS

    parser = subparsers.add_parser(
        "points",
        help="list the cut points of a function (planned, or refused with the reason)",
        description="List every cut point of FUNC as the search plans them; nothing is written.",
    )
    parser.add_argument("function", metavar="FUNC", help="the function (a symbol name)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--pid", metavar="PID", help="a running process")
    group.add_argument("--kernel", action="store_true", help="the running kernel")
    group.add_argument("--elf", metavar="FILE", help="an ELF file, at its link-time addresses")
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="only these kinds (repeatable; default all)",
    )
    parser.add_argument("--deny", metavar="FILE", help="more deny rules (see knockout climb)")
    parser.add_argument("--planned", action="store_true", help="only the points that can be cut")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(func=cmd_points)


def _row(c: Any) -> str:
    where = f"{c.source.file}:{c.source.line}" if c.source else ""
    what = c.text if c.cut is not None else c.refused
    return f"{c.location:<28} {c.kind:<17} {what}" + (f"  [{where}]" if where else "")


def cmd_points(args: argparse.Namespace) -> int:
    """Print the points (one line each, or ``--json``)."""
    from knockout.search import KINDS, candidates
    from knockout.search.deny import DenyRules
    from knockout.search.elfcode import ElfCode

    kinds = tuple(args.kind or KINDS)
    if args.elf is not None:
        if args.deny:
            raise BadInput("--deny needs a running target (--pid or --kernel); drop it with --elf")
        found = candidates(ElfCode(args.elf), args.function, kinds=kinds)
    else:
        target = open_target(args)
        try:
            rules: DenyRules = search_rules(args, target)
            found = candidates(target, args.function, kinds=kinds, refuse=rules.predicate())
        finally:
            target.close()
    if args.planned:
        found = [c for c in found if c.cut is not None]
    if args.json:
        print(json.dumps([c.as_json() for c in found], indent=2))
        return 0
    for c in found:
        print(_row(c))
    planned = sum(c.cut is not None for c in found)
    print(f"{planned} of {len(found)} points can be cut")
    return 0
