"""``knockout trial SPEC... INTENT --symptom S (--pid PID | --kernel) [...]``.

Measures the symptom in interleaved windows without and with the cut and
prints the verdict: ``gone``, ``persists`` or ``inconclusive``, with medians,
CIs, the effect, p-values and where the heat moved.  Several SPECs share the
intent; ``--cut 'SPEC INTENT'`` adds a cut with its own intent.  All cuts are
applied together in the cut windows.  Ctrl-C reverts and prints what was
measured so far.
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import TYPE_CHECKING

from knockout.commands._cutopts import add_intent_options, intent_from_args
from knockout.commands._target import add_target_options, open_target, search_rules
from knockout.commands._trialopts import (
    DEFAULT_WINDOWS,
    VERDICTS,
    add_trial_options,
    check_outputs,
    config_from_args,
    judging_from_args,
    parse_healthy,
    write_outputs,
)
from knockout.cuts import Cut, Intent, describe_intent
from knockout.errors import BadInput

if TYPE_CHECKING:  # the heavy modules are imported when the command runs
    from knockout.changes import Write
    from knockout.measure.symptoms import Symptom
    from knockout.targets import Target
    from knockout.trial import TrialConfig, TrialResult

__all__ = ["DEFAULT_WINDOWS", "cmd_trial", "config_from_args", "parse_healthy", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout trial``."""
    p = subparsers.add_parser(
        "trial",
        help="judge a cut: does the symptom go away? (interleaved windows, statistical verdict)",
        description="Measure SYMPTOM in ABBA-interleaved windows without and with the cut "
        "and judge: gone, reduced, persists, inconclusive or breaks.",
        epilog=VERDICTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "specs", nargs="*", metavar="SPEC", help="SYMBOL, SYMBOL+0x150 or 0xADDR (or none: --write)"
    )
    add_intent_options(p, allow_aa=True, required=False)
    add_target_options(p)
    p.add_argument(
        "--cut",
        dest="more",
        action="append",
        default=[],
        metavar="'SPEC INTENT'",
        help="one more cut with its own intent, e.g. --cut 'f+0x10 --skip'",
    )
    p.add_argument(
        "--write",
        dest="writes",
        action="append",
        default=[],
        metavar="FILE=VALUE",
        help="a remedy as the arm: write VALUE to FILE in the cut windows, the old value back "
        "after (repeatable), e.g. --write /sys/fs/cgroup/pod/memory.max=600M",
    )
    add_trial_options(p)
    p.set_defaults(func=cmd_trial)


def _extra_cut(text: str) -> tuple[str, Intent]:
    """``'SPEC --skip'`` -> (spec, intent), with the same options as the main intent."""
    parser = argparse.ArgumentParser(prog="--cut", add_help=False, exit_on_error=False)
    parser.add_argument("spec")
    add_intent_options(parser, allow_aa=True)
    try:
        ns = parser.parse_args(shlex.split(text))
    except (argparse.ArgumentError, SystemExit, ValueError):
        raise BadInput(
            f"--cut takes 'SPEC INTENT', e.g. --cut 'f+0x10 --skip'; got {text!r}"
        ) from None
    return ns.spec, intent_from_args(ns)


def plan_cuts(target: Target, args: argparse.Namespace) -> list[Cut]:
    """The cuts the command line names, planned against ``target``."""
    from knockout.search.candidates import plan_spec

    wanted = [_extra_cut(t) for t in args.more]
    if args.specs:
        intent = intent_from_args(args)
        wanted = [(spec, intent) for spec in args.specs] + wanted
    refuse = search_rules(args, target).predicate()
    return [plan_spec(target, spec, i, refuse=refuse) for spec, i in wanted]


def cmd_trial(args: argparse.Namespace) -> int:
    """Run ``knockout trial``."""
    from rich.console import Console

    from knockout.report.text import render_trial

    symptom, config = judging_from_args(args)
    from knockout.changes import parse_write

    writes = [parse_write(w) for w in args.writes]
    if _named_intent(args) and not args.specs:
        raise BadInput("an intent (--return, --set, ...) needs a SPEC to cut, e.g. shrink_slab")
    if not args.specs and not args.more and not writes:
        raise BadInput("name what to judge: SPEC with an intent, --cut 'SPEC INTENT' or --write")
    check_outputs(args)
    target = open_target(args)
    try:
        result = _run(target, plan_cuts(target, args), symptom, config, writes)
        doc = result.as_dict()
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            render_trial(Console(), result)
        write_outputs(args, doc, target)
    finally:
        target.close()
    return 130 if result.stopped and result.stopped.startswith("interrupted") else 0


def _named_intent(args: argparse.Namespace) -> bool:
    """Whether the command line names an intent for its SPECs."""
    return any(
        v not in (None, False)
        for v in (
            args.ret,
            args.return_at,
            args.set,
            args.skip,
            args.skip_call,
            args.force_branch,
            args.raw,
            args.aa,
        )
    )


def _run(
    target: Target, cuts: list[Cut], symptom: Symptom, config: TrialConfig, writes: list[Write]
) -> TrialResult:
    """The trial, with its cuts named first and a progress bar on stderr."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from knockout.stats import Look, Verdict
    from knockout.trial import Window, run_trial

    err = Console(stderr=True)
    for c in cuts:
        err.print(escape(f"cut {c.location} ({describe_intent(c.intent)}) in {c.target}"))
    for w in writes:
        err.print(escape(f"write {w.path} = {w.value} in the cut windows"))
    total = (1 if config.warmup else 0) + 2 * config.windows
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(escape(f"trial on {symptom.name}"), total=total)

        def progress(w: Window, at_look: tuple[Look, Verdict] | None) -> None:
            note = f" -> {at_look[1]} at {at_look[0].n}/arm" if at_look else ""
            bar.update(task, advance=1, description=escape(f"{w.arm:<8} {w.value:.4g}{note}"))

        return run_trial(target, cuts, symptom, config, progress=progress, writes=writes)
