"""``knockout cut SPEC (--pid PID | --kernel) INTENT [--for S] [--detach] [--json]``.

Plans the cut, applies it, shows what changed, holds it until ``--for``
ends or Ctrl-C/SIGTERM, then reverts.  ``--detach`` leaves it in place and
journaled; ``knockout revert --all`` undoes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import TYPE_CHECKING

from knockout.asm import disasm
from knockout.commands._cutopts import add_intent_options, intent_from_args
from knockout.commands._target import add_target_options, open_target, search_rules
from knockout.cuts import Cut, describe_intent
from knockout.errors import BadInput, TargetGone
from knockout.targets import Target, cut

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cmd_cut", "cut_json", "register"]

#: how often a held cut checks that its target still runs
_POLL = 0.2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout cut``."""
    parser = subparsers.add_parser(
        "cut",
        help="cut code out of a running process or kernel, hold, then revert",
        description="Apply a cut, show it, hold it until --for ends or Ctrl-C, then revert.",
    )
    parser.add_argument("spec", metavar="SPEC", help="SYMBOL, SYMBOL+0x150, 0xADDR or file.c:LINE")
    add_target_options(parser)
    add_intent_options(parser)
    parser.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="hold time")
    parser.add_argument(
        "--ttl",
        type=float,
        metavar="SECONDS",
        help="--kernel: the module reverts the cut this long after knockout dies (default 5)",
    )
    parser.add_argument(
        "--detach", action="store_true", help="leave the cut in place (journaled) and exit"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.set_defaults(func=cmd_cut)


def _insns(data: bytes, planned: Cut) -> list[str]:
    return [i.text for i in disasm(data, planned.arch, vma=planned.address)]


def cut_json(event: str, planned: Cut) -> dict[str, object]:
    """The JSON form of a cut event (``applied``, ``reverted``, ``left``)."""
    return {
        "event": event,
        "target": planned.target,
        "address": f"{planned.address:#x}",
        "location": planned.location,
        "intent": describe_intent(planned.intent),
        "old": planned.old.hex(),
        "new": planned.new.hex(),
        "before": _insns(planned.old, planned),
        "after": _insns(planned.new, planned),
    }


def _show(console: Console, planned: Cut) -> None:
    console.print(f"cut {planned.location} in {planned.target}")
    console.print(f"  address  {planned.address:#x} ({planned.location})")
    console.print(f"  intent   {describe_intent(planned.intent)}")
    console.print(f"  bytes    {planned.old.hex(' ')}  ->  {planned.new.hex(' ')}")
    before = ["before", *_insns(planned.old, planned)]
    after = ["after", *_insns(planned.new, planned)]
    width = max(len(t) for t in before)
    for i in range(max(len(before), len(after))):
        left = before[i] if i < len(before) else ""
        right = after[i] if i < len(after) else ""
        console.print(f"  {left:<{width}}   {right}".rstrip())


def _emit(args: argparse.Namespace, console: Console, event: str, planned: Cut) -> None:
    if args.json:
        print(json.dumps(cut_json(event, planned)), flush=True)
    elif event == "applied":
        _show(console, planned)
    elif event == "reverted":
        console.print(f"reverted: {planned.old.hex(' ')} restored at {planned.location}")
    else:
        which = f"--pid {args.pid}" if args.pid is not None else "--kernel"
        console.print(f"left in place (journaled); undo with: knockout revert --all {which}")


def _hold(target: Target, duration: float | None) -> None:
    """Sleep until ``duration`` ends (forever if None); TargetGone if the target exits."""
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        time.sleep(max(left, 0))
        if not target.alive():
            raise TargetGone(f"{target.description} exited while the cut was held")


def cmd_cut(args: argparse.Namespace) -> int:
    """Apply, show, hold, revert (or leave in place with ``--detach``)."""
    from knockout.search.candidates import plan_spec

    if args.detach and args.duration is not None:
        raise BadInput("--detach leaves the cut in place; drop --for (or drop --detach)")
    if args.duration is not None and args.duration < 0:
        raise BadInput(f"--for takes a number of seconds >= 0; got {args.duration}")
    from rich.console import Console

    console = Console(highlight=False, markup=False, soft_wrap=True)
    target = open_target(args)
    if args.detach and not target.abilities.detach:
        raise BadInput(
            f"--detach is not possible for {target.description} ({target.abilities.dead_man}); "
            "hold the cut with --for SECONDS instead"
        )
    planned = plan_spec(
        target, args.spec, intent_from_args(args), refuse=search_rules(args, target).predicate()
    )
    if args.detach:
        target.leave(target.apply(planned))
        _emit(args, console, "left", planned)
        return 0
    with cut(target, planned):
        _emit(args, console, "applied", planned)
        if not args.json:
            how = "until Ctrl-C" if args.duration is None else f"for {args.duration:g} s"
            console.print(f"holding {how}; Ctrl-C reverts")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C/SIGTERM end the hold
            _hold(target, args.duration)
    _emit(args, console, "reverted", planned)
    return 0
