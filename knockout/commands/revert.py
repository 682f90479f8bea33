"""``knockout revert --all [--pid PID | --kernel]``: put back the bytes of cuts left in place.

Used after ``knockout cut --detach``, or after knockout was killed while
holding a cut (process cuts also have a guardian, kernel cuts a TTL).  One
rule for both kinds: every cut no live knockout holds is reverted; a cut a
running knockout holds is left to it (stop that knockout and it reverts).
Without ``--pid``/``--kernel`` it also removes the uprobes and kprobes a
killed call count left (:func:`knockout.measure.calls.remove_stale_probes`).
"""

from __future__ import annotations

import argparse
import sys

from knockout.commands._target import add_target_options, target_kind
from knockout.errors import BadInput
from knockout.targets import Outcome

__all__ = ["cmd_revert", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout revert``."""
    parser = subparsers.add_parser(
        "revert",
        help="revert cuts left in place (after --detach or a killed knockout)",
        description="Restore the original bytes of every cut no live knockout holds "
        "(journaled process cuts and the kernel module's cuts).",
    )
    parser.add_argument("--all", action="store_true", help="every such cut (required)")
    add_target_options(parser, required=False)
    parser.set_defaults(func=cmd_revert)


def _outcomes(kind: str | None, pid: int | None) -> list[Outcome]:
    out: list[Outcome] = []
    if kind in (None, "process"):
        from knockout.targets.process import revert_journaled

        out += revert_journaled(pid=pid)
    if kind in (None, "kernel"):
        from knockout.targets.kernel import revert_unheld

        out += revert_unheld()
    if kind is None:  # and the probes a killed call count left
        from knockout.measure.calls import remove_stale_probes

        out += remove_stale_probes()
    return out


def cmd_revert(args: argparse.Namespace) -> int:
    """Revert, print one line per cut; exit 2 if any cut is still in place."""
    if not args.all:
        raise BadInput("say what to revert: --all, optionally with --pid PID or --kernel")
    outcomes = _outcomes(target_kind(args), args.pid)
    if not outcomes:
        print("no cuts in place")
    for o in outcomes:
        if o.ok:
            print(o.message)
        else:
            print(f"knockout: {o.message}", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 2
