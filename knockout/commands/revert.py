"""``knockout revert --all [--pid PID | --kernel]``: put back the original bytes of journaled cuts.

Used after ``knockout cut --detach``, or after knockout was killed (SIGKILL)
while holding a cut.  Each kind of target has one function in
:data:`REVERTERS` (``kind -> (args) -> [(ok, message)]``); the kernel target
adds its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from knockout.commands._kernel import revert_kernel
from knockout.commands._target import add_target_options, target_kind
from knockout.errors import BadInput

__all__ = ["REVERTERS", "cmd_revert", "register", "revert_processes"]

Result = tuple[bool, str]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout revert``."""
    parser = subparsers.add_parser(
        "revert",
        help="revert journaled cuts (after --detach or a killed knockout)",
        description="Restore the original bytes of every journaled cut no live knockout holds.",
    )
    parser.add_argument("--all", action="store_true", help="every journaled cut (required)")
    add_target_options(parser, required=False)
    parser.set_defaults(func=cmd_revert)


def revert_processes(args: argparse.Namespace) -> list[Result]:
    """Revert journaled process cuts; entries of exited or recycled pids are only cleared."""
    from knockout.targets.process import revert_journaled

    return [
        (o.status in ("reverted", "cleared"), o.message) for o in revert_journaled(pid=args.pid)
    ]


#: kind -> reverter; the kernel target registers ``"kernel"`` here
REVERTERS: dict[str, Callable[[argparse.Namespace], list[Result]]] = {
    "process": revert_processes,
    "kernel": revert_kernel,
}


def cmd_revert(args: argparse.Namespace) -> int:
    """Revert, print one line per cut; exit 2 if any cut is still in place."""
    if not args.all:
        raise BadInput("say what to revert: --all, optionally with --pid PID or --kernel")
    kind = target_kind(args)
    results = [r for k, reverter in REVERTERS.items() if kind in (None, k) for r in reverter(args)]
    if not results:
        print("no journaled cuts")
    for ok, message in results:
        if ok:
            print(message)
        else:
            print(f"knockout: {message}", file=sys.stderr)
    return 0 if all(ok for ok, _ in results) else 2
