"""``knockout bisect FUNCTION --symptom S (--pid PID | --run CMD | --kernel) [...]``.

Finds where inside FUNCTION the cost behind the symptom is made: it cuts
"return at P" at points chosen by a probabilistic bisection, judges each
with a trial, and reports the region between the last point whose cut
removes the symptom and the first whose cut does not -- addresses, source
lines and the verdicts that bound it.  Points the planner or the deny rules
refuse are never probed.
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
from knockout.spelling import parse_fraction, parse_int

if TYPE_CHECKING:
    pass

__all__ = ["cmd_bisect", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout bisect``."""
    p = subparsers.add_parser(
        "bisect",
        help="search inside a function: where is the cost made? (return-at-P probes)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=VERDICTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("function", metavar="FUNCTION", help="the function to bisect, e.g. shrink_slab")
    add_search_target_options(p)
    p.add_argument(
        "--confidence", default="99%", metavar="C", help="stop when the region is this sure (99%%)"
    )
    p.add_argument("--max-probes", metavar="N", help="probe at most N points")
    p.add_argument(
        "--return-value",
        metavar="V",
        help="what a return at P returns: a number or void (default: from the DWARF type, or 0)",
    )
    add_trial_options(p)
    p.set_defaults(func=cmd_bisect)


def cmd_bisect(args: argparse.Namespace) -> int:
    """Run ``knockout bisect``."""
    from rich.console import Console
    from rich.markup import escape

    from knockout.search.bisect import BisectConfig, Probe, bisect

    symptom, trial = judging_from_args(args)
    value: int | str | None = None
    if args.return_value is not None:
        value = "void" if args.return_value == "void" else parse_int(args.return_value)
    config = BisectConfig(
        trial=trial,
        confidence=parse_fraction(args.confidence, "--confidence"),
        max_probes=parse_int(args.max_probes) if args.max_probes else None,
        return_value=value,  # type: ignore[arg-type]
    )
    check_outputs(args)
    err = Console(stderr=True, highlight=False)

    def progress(probe: Probe) -> None:
        verdict = probe.trial.verdict if probe.trial else "-"
        err.print(f"  probe {escape(probe.point.location)}: {verdict}")

    with SearchTarget(args) as opened:
        target = opened.target
        refuse = search_rules(args, target).predicate()
        result = bisect(target, args.function, symptom, config, refuse=refuse, progress=progress)
        doc = result.as_dict()
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            _print(Console(highlight=False), doc)
        write_outputs(args, doc, target)
    return 0


def _print(out: Any, doc: dict[str, Any]) -> None:
    from rich.markup import escape

    out.print(
        f"bisect of {escape(doc['function'])}: {doc['planned']} of {doc['points']} points "
        f"can be cut; {len(doc['probes'])} probed"
    )
    for probe in doc["probes"]:
        line = f" ({probe['line']})" if probe["line"] else ""
        out.print(f"  {escape(probe['point'])}{escape(line)}: {probe['verdict']}")
    out.print(f"[bold]{escape(doc['conclusion'])}[/]")
