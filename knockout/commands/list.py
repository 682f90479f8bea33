"""``knockout list [--pid PID | --kernel] [--json]``: the cuts in place, and who holds each."""

from __future__ import annotations

import argparse
import json

from knockout.commands._target import add_target_options, target_kind

__all__ = ["cmd_list", "register"]

Row = dict[str, object]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout list``."""
    parser = subparsers.add_parser(
        "list",
        help="show the cuts in place (held, left in place, or orphaned)",
        description="Show every cut in place: journaled process cuts and the kernel module's.",
    )
    add_target_options(parser, required=False)
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(func=cmd_list)


def process_rows(pid: int | None) -> list[Row]:
    """One row per journaled process cut (``pid``'s only when given)."""
    from knockout.journal import Journal

    rows: list[Row] = []
    for e in Journal().entries(pid):
        if e.holder_pid is None:
            holder = "detached"
        elif e.holder_alive():
            holder = f"knockout pid {e.holder_pid}"
        else:
            holder = f"orphaned (knockout pid {e.holder_pid} died)"
        rows.append(
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
                "state": "in place" if e.target_alive() else "target gone",
                "holder": holder,
            }
        )
    return rows


def kernel_rows() -> list[Row]:
    """One row per cut knockout's module holds (none when it is not loaded)."""
    from knockout.targets.kernel import kernel_cuts, kernel_release

    rows: list[Row] = []
    for state in kernel_cuts():
        c, holder = state.cut, state.holder
        lifetime = "pinned" if c.ttl < 0 else f"reverts itself in {c.ttl:.1f} s unless renewed"
        who = f"knockout pid {holder.holder_pid}; " if state.held and holder else ""
        rows.append(
            {
                "kind": "kernel",
                "id": c.id,
                "target": f"kernel {kernel_release()}",
                "address": f"{c.address:#x}",
                "location": holder.location if holder else c.location.split("/")[0],
                "intent": holder.intent if holder else "",
                "old": c.old.hex(),
                "new": c.new.hex(),
                "state": "stuck (bytes changed under it)" if c.state == "stuck" else "in place",
                "holder": who + lifetime,
                "mechanism": c.mechanism,
            }
        )
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    """Print the cuts in place as a table or JSON."""
    kind = target_kind(args)
    rows = (process_rows(args.pid) if kind in (None, "process") else []) + (
        kernel_rows() if kind in (None, "kernel") else []
    )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console

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
