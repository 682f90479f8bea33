"""``knockout climb --symptom S (--pid PID | --run CMD | --kernel) [...]``.

Profiles the target, takes the hot call stack, and cuts its frames from the
leaf towards the root -- each at its entry, or at the call site in its
caller when the frame is shared -- judging every cut with a trial.  Prints
one line per frame (verdict, explained share, where the heat moved), the
cost split where calls were counted, and the conclusion: the lowest frame
whose cut is ``gone``, or, when none is, what the measurements say instead.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from knockout.commands._target import SearchTarget, add_search_target_options, search_rules
from knockout.commands._trialopts import (
    VERDICTS,
    add_trial_options,
    check_outputs,
    judging_from_args,
    write_outputs,
)
from knockout.errors import BadInput
from knockout.spelling import parse_duration, parse_int

if TYPE_CHECKING:
    from knockout.search.climb import ClimbResult

__all__ = ["cmd_climb", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout climb``."""
    p = subparsers.add_parser(
        "climb",
        help="search the hot stack: cut frames from the leaf up until the symptom goes",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=VERDICTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_target_options(p)
    p.add_argument("--profile", default="5s", metavar="T", help="profile the hot stack for T (5s)")
    p.add_argument("--max-frames", default="8", metavar="N", help="judge at most N frames (8)")
    p.add_argument("--return-value", metavar="V", help="what an entry cut returns (default 0)")
    p.add_argument(
        "--no-count",
        action="store_true",
        help="do not count calls for the cost split (uprobes/kprobes)",
    )
    add_trial_options(p)
    p.set_defaults(func=cmd_climb)


def cmd_climb(args: argparse.Namespace) -> int:
    """Run ``knockout climb``."""
    from rich.console import Console

    from knockout.search.climb import ClimbConfig, climb

    symptom, trial = judging_from_args(args)
    frames = parse_int(args.max_frames)
    if frames < 1:
        raise BadInput(f"--max-frames {frames}: give at least 1")
    config = ClimbConfig(
        trial=trial,
        profile_seconds=parse_duration(args.profile),
        max_frames=frames,
        return_value=parse_int(args.return_value) if args.return_value is not None else None,
        kallsyms=args.kallsyms,
        count=not args.no_count,
    )
    check_outputs(args)
    err = Console(stderr=True, highlight=False)
    with SearchTarget(args) as opened:
        target = opened.target
        deny = search_rules(args, target)
        err.print(f"profiling {target.description} for {config.profile_seconds:g} s")

        def progress(frame: Any, phase: str) -> None:
            if phase == "trial":
                err.print(f"  judging {frame.frame.symbol} ...", markup=False)
            else:
                err.print(f"  {frame.line()}", markup=False)

        result = climb(
            target,
            symptom,
            config,
            deny=deny,
            progress=progress,
            restart=opened.restart,
        )
        doc = result.as_dict()
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            _print(Console(highlight=False), result)
        write_outputs(args, doc, opened.target)
    return 0


def _print(out: Any, result: ClimbResult) -> None:
    from rich.markup import escape

    out.print(f"climb of {escape(result.target)} on {escape(result.symptom)}")
    for frame in result.frames:
        out.print(f"  {escape(frame.line())}")
    counted = [f for f in result.frames if f.calls_per_s is not None]
    if counted:
        out.print("cost split:")
        for f in counted:
            fan = ", ".join(f"{k} x{v:.3g}" for k, v in f.fanout.items())
            cost = f"{f.cost_per_call_s * 1e6:.3g} us/call" if f.cost_per_call_s else "-"
            out.print(f"  {escape(f.frame.symbol)}: {f.calls_per_s:.3g} calls/s, {cost}; {fan}")
    for note in ([result.stopped] if result.stopped else []) + result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    out.print(f"[bold]{escape(result.conclusion())}[/]")
