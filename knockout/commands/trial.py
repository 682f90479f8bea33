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
import re
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from knockout.commands._cutopts import add_intent_options, intent_from_args
from knockout.commands._target import add_target_options, open_target, target_kind
from knockout.cuts import Cut, Intent, describe_intent
from knockout.errors import BadInput
from knockout.measure.symptoms import parse_symptom
from knockout.plan import plan_at
from knockout.stats import Look, Verdict
from knockout.targets import Target
from knockout.trial import TrialConfig, TrialResult, Window, run_trial

__all__ = ["cmd_trial", "parse_duration", "parse_fraction", "register"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}
_COLOURS = {"gone": "bold green", "persists": "bold red", "inconclusive": "bold yellow"}


def parse_duration(text: str) -> float:
    """``5s``, ``500ms``, ``0.5``, ``1m`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*", text)
    if not m or float(m[1]) <= 0:
        raise BadInput(f"{text!r} is not a duration; write e.g. 5s, 500ms or 1m")
    return float(m[1]) * _UNITS[m[2] or "s"]


def parse_fraction(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*", text)
    if not m:
        raise BadInput(f"{text!r} is not an effect size; write e.g. 10% or 0.1")
    value = float(m[1]) / (100 if m[2] else 1)
    if not 0 < value < 1:
        raise BadInput(f"--min-effect {text} is out of range; write e.g. 10%")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout trial``."""
    p = subparsers.add_parser(
        "trial",
        help="judge a cut: does the symptom go away? (interleaved windows, statistical verdict)",
        description="Measure SYMPTOM in ABBA-interleaved windows without and with the cut "
        "and judge: gone, persists or inconclusive.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="SYMBOL, SYMBOL+0x150 or 0xADDR")
    add_intent_options(p, allow_aa=True)
    add_target_options(p)
    p.add_argument(
        "--symptom",
        required=True,
        metavar="S",
        help="sys | load | cmd:'COMMAND' | metric:'COMMAND' | hot:SYMBOL",
    )
    p.add_argument("--higher-is-better", action="store_true", help="for metric: (throughput)")
    p.add_argument(
        "--cut",
        dest="more",
        action="append",
        default=[],
        metavar="'SPEC INTENT'",
        help="one more cut with its own intent, e.g. --cut 'f+0x10 --skip'",
    )
    p.add_argument("--windows", type=int, default=10, metavar="N", help="at most N per arm (10)")
    p.add_argument("--window", default="5s", metavar="T", help="window length (5s)")
    p.add_argument("--alpha", type=float, default=0.01, help="error rate of each verdict (0.01)")
    p.add_argument("--min-effect", default="10%", metavar="E", help="smallest effect (10%%)")
    p.add_argument("--no-warmup", action="store_true", help="do not discard a first window")
    p.add_argument("--no-profile", action="store_true", help="do not record perf profiles")
    p.add_argument("--kallsyms", metavar="FILE", help="kernel symbols for perf script")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", metavar="FILE", help="also write the JSON result to FILE")
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
    intent = intent_from_args(args)
    wanted = [(spec, intent) for spec in args.specs] + [_extra_cut(t) for t in args.more]
    return [plan_at(target, spec, i) for spec, i in wanted]


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    """The :class:`TrialConfig` the options describe."""
    return TrialConfig(
        windows=args.windows,
        window=parse_duration(args.window),
        alpha=args.alpha,
        min_effect=parse_fraction(args.min_effect),
        warmup=not args.no_warmup,
        profile=not args.no_profile,
        perf_pid=args.pid if target_kind(args) == "process" else None,
        kallsyms=args.kallsyms,
    )


def cmd_trial(args: argparse.Namespace) -> int:
    """Run ``knockout trial``."""
    symptom = parse_symptom(args.symptom, higher_is_better=args.higher_is_better)
    config = config_from_args(args)
    config.design(symptom.higher_is_better).looks  # noqa: B018 -- refuse before cutting
    target = open_target(args)
    cuts = plan_cuts(target, args)
    err = Console(stderr=True)
    for c in cuts:
        err.print(escape(f"cut {c.location} ({describe_intent(c.intent)}) in {c.target}"))
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

        result = run_trial(target, cuts, symptom, config, progress=progress)
    doc = result.as_dict()
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _report(Console(), result)
    return 130 if result.stopped and result.stopped.startswith("interrupted") else 0


def _fmt(value: float, unit: str) -> str:
    return f"{value:.4g}{unit if unit in ('%', 's') else ' ' + unit if unit else ''}"


def _ci(ci: tuple[float, float] | None, unit: str) -> str:
    return f"[{_fmt(ci[0], unit)}, {_fmt(ci[1], unit)}]" if ci else "-"


def _report(out: Console, r: TrialResult) -> None:
    j = r.judgement
    assert j is not None
    table = Table(title=escape(f"{r.symptom}: baseline vs cut"), show_edge=False)
    for col in ("arm", "windows", "median", "95% CI"):
        table.add_column(col)
    for name, arm in (("baseline", j.baseline), ("cut", j.cut)):
        table.add_row(name, str(len(arm.samples)), _fmt(arm.median, r.unit), _ci(arm.ci, r.unit))
    out.print(table)
    eci = f" (CI {j.effect_ci[0]:+.0%} .. {j.effect_ci[1]:+.0%})" if j.effect_ci else ""
    out.print(
        f"effect {j.effect:+.1%}{eci}; p(reduced)={j.p_reduced:.2g}, "
        f"p(within ±{j.design.min_effect:.0%})={j.p_equivalence:.2g}"
    )
    out.print(f"[{_COLOURS[j.verdict]}]{j.verdict}[/]: {escape(j.reason)}")
    if r.heat:
        out.print(f"heat: {escape(r.heat)}")
        _heat_table(out, r)
    if r.mechanisms:
        out.print(f"applied by: {', '.join(r.mechanisms)}")
    for line in ([r.stopped] if r.stopped else []) + r.notes:
        out.print(f"[yellow]note:[/] {escape(line)}")


def _heat_table(out: Console, r: TrialResult) -> None:
    table = Table(show_edge=False)
    for col in ("symbol", "baseline", "cut", "change", "incl. baseline", "incl. cut"):
        table.add_column(col, justify="left" if col == "symbol" else "right")
    for h in r.profile_diff:
        table.add_row(*_heat_row(h.as_dict()))
    out.print(table)


def _heat_row(h: dict[str, Any]) -> list[str]:
    pct = [f"{h[k] * 100:.1f}%" for k in ("baseline", "cut")]
    incl = [f"{h[k] * 100:.1f}%" for k in ("baseline_total", "cut_total")]
    return [escape(str(h["symbol"])), *pct, f"{h['delta'] * 100:+.1f}", *incl]
