"""``knockout list [--pid PID | --kernel] [--json]``: the cuts in place, from the journals.

Each kind of target contributes rows through one function in :data:`LISTERS`
(``kind -> (args) -> rows``); the kernel target adds its own.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from rich.console import Console

from knockout.commands._kernel import kernel_rows
from knockout.commands._target import add_target_options, target_kind
from knockout.journal import Entry, Journal

__all__ = ["LISTERS", "cmd_list", "process_rows", "register"]

Row = dict[str, object]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout list``."""
    parser = subparsers.add_parser(
        "list",
        help="show journaled cuts (held or left in place)",
        description="Show every cut the journals record as in place.",
    )
    add_target_options(parser, required=False)
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(func=cmd_list)


def _state(entry: Entry) -> str:
    if entry.target_alive():
        return "in place"
    return "target gone"


def _holder(entry: Entry) -> str:
    if entry.holder_pid is None:
        return "detached"
    if entry.holder_alive():
        return f"knockout pid {entry.holder_pid}"
    return f"orphaned (knockout pid {entry.holder_pid} died)"


def process_rows(args: argparse.Namespace) -> list[Row]:
    """One row per journaled process cut (``--pid``'s only when given)."""
    return [
        {
            "kind": "process",
            "pid": e.pid,
            "start_time": e.start_time,
            "target": e.target,
            "address": f"{e.address:#x}",
            "location": e.location,
            "intent": e.intent,
            "old": e.old.hex(),
            "new": e.new.hex(),
            "state": _state(e),
            "holder": _holder(e),
        }
        for e in Journal().entries(args.pid)
    ]


#: kind -> row source; the kernel target registers ``"kernel"`` here
LISTERS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "process": process_rows,
    "kernel": kernel_rows,
}


def cmd_list(args: argparse.Namespace) -> int:
    """Print the journaled cuts as a table or JSON."""
    kind = target_kind(args)
    rows = [row for k, lister in LISTERS.items() if kind in (None, k) for row in lister(args)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    console = Console(highlight=False, markup=False, soft_wrap=True)
    if not rows:
        console.print("no cuts in place")
        return 0
    for row in rows:
        console.print(
            f"{row['target']}  {row['location']} ({row['address']})  {row['intent']}  "
            f"{row['old']} -> {row['new']}  [{row['state']}; {row['holder']}]"
        )
    return 0
