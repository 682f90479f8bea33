"""The options every judged command shares: ``trial``, ``climb`` and ``bisect``.

The symptom, how it is judged (healthy level, windows, levels), the guards
whose evidence makes a cut ``breaks``, and the output (JSON, a saved file).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from knockout.commands._target import target_kind
from knockout.errors import BadInput
from knockout.spelling import parse_duration, parse_fraction

if TYPE_CHECKING:
    from knockout.measure.symptoms import Symptom
    from knockout.targets import Target
    from knockout.trial import TrialConfig

__all__ = [
    "DEFAULT_WINDOWS",
    "VERDICTS",
    "add_trial_options",
    "check_outputs",
    "config_from_args",
    "judging_from_args",
    "parse_healthy",
    "parse_settle",
    "write_outputs",
]

#: at most this many windows per arm, by default: knockout.stats.DEFAULT_WINDOWS, written
#: out so that --help does not import the statistics (tests/unit/test_trial_cli.py checks)
DEFAULT_WINDOWS = 20

VERDICTS = """\
verdicts:
  gone          the cut brings the symptom back to healthy: at least --gone-at (80%) of
                its excess over healthy is removed, shown by a one-sided test at --alpha
  reduced       a real reduction of at least --min-effect, but the symptom remains
  persists      no effect larger than --min-effect (shown, not assumed)
  inconclusive  neither shown within --windows; lengthen --window or raise --windows
  breaks        the cut stopped the work: the target died, the kernel logged an oops or
                a warning, OOM kills in --cgroup, a --guard failed, the symptom failed, or
                the --work rate fell; the cut is reverted at once. Never a fix.

explained share: the fraction of the symptom's excess over healthy that the cut removes,
(baseline - cut) / (baseline - healthy) of the medians, with its 95% CI. Healthy is
--healthy (e.g. --healthy 15%% for sys), else the symptom's zero (for a throughput: zero
time per unit of work, explained = 1 - baseline/cut).
"""


def add_trial_options(p: argparse.ArgumentParser) -> None:
    """Add the symptom, judging, guard and output options."""
    p.add_argument(
        "--symptom",
        required=True,
        metavar="S",
        help="sys | load | cmd:'COMMAND' | metric:'COMMAND' | hot:SYMBOL",
    )
    p.add_argument("--higher-is-better", action="store_true", help="for metric: (throughput)")
    judged = p.add_argument_group("judging")
    judged.add_argument(
        "--healthy",
        metavar="V",
        help="the symptom's healthy level, e.g. 15%% for sys or a healthy throughput "
        "(default: the symptom's zero)",
    )
    judged.add_argument(
        "--gone-at", default="80%", metavar="E", help="explained share that is gone (80%%)"
    )
    judged.add_argument("--min-effect", default="10%", metavar="E", help="smallest effect (10%%)")
    judged.add_argument("--alpha", type=float, default=0.01, help="error rate of a finding (0.01)")
    judged.add_argument(
        "--windows",
        type=int,
        default=DEFAULT_WINDOWS,
        metavar="N",
        help=f"at most N per arm ({DEFAULT_WINDOWS})",
    )
    judged.add_argument("--window", default="5s", metavar="T", help="window length (5s)")
    judged.add_argument(
        "--settle",
        metavar="T",
        help="wait T after each switch before measuring (default: a fifth of --window, at most 1s)",
    )
    judged.add_argument("--no-warmup", action="store_true", help="do not discard a first window")
    guards = p.add_argument_group("breaks: evidence that the cut stopped the work")
    guards.add_argument(
        "--work",
        metavar="'metric:CMD'",
        help="the rate of useful work (higher is better); must not fall under the cut",
    )
    guards.add_argument(
        "--guard",
        action="append",
        default=[],
        metavar="CMD",
        help="a command that must keep exiting 0 (repeatable)",
    )
    guards.add_argument(
        "--cgroup", metavar="PATH", help="OOM kills in this cgroup (memory.events) break the work"
    )
    p.add_argument("--no-profile", action="store_true", help="do not record perf profiles")
    p.add_argument("--kallsyms", metavar="FILE", help="kernel symbols for perf script")
    p.add_argument(
        "--ttl",
        type=float,
        metavar="SECONDS",
        help="--kernel: the module reverts a cut this long after knockout dies (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="also write a report to DIR: report.md, report.html, plots, flame graphs, JSON",
    )


def parse_healthy(text: str | None, unit: str) -> float | None:
    """``--healthy``: ``15%`` (for a % symptom: 15.0) or a number in the symptom's unit."""
    if text is None:
        return None
    cleaned = text.strip()
    if cleaned.endswith("%"):
        if unit != "%":
            raise BadInput(
                f"--healthy {text}: this symptom is measured in {unit or 'plain numbers'}, "
                "not %; give the level in its unit"
            )
        cleaned = cleaned[:-1]
    try:
        return float(cleaned)
    except ValueError:
        raise BadInput(
            f"--healthy {text!r} is not a level; write e.g. --healthy 15% or 2.5"
        ) from None


def config_from_args(args: argparse.Namespace, unit: str = "") -> TrialConfig:
    """The :class:`TrialConfig` the options describe."""
    from knockout.trial import TrialConfig

    return TrialConfig(
        windows=args.windows,
        window=parse_duration(args.window),
        alpha=args.alpha,
        min_effect=parse_fraction(args.min_effect),
        warmup=not args.no_warmup,
        profile=not args.no_profile,
        perf_pid=args.pid if target_kind(args) == "process" else None,
        kallsyms=args.kallsyms,
        healthy=parse_healthy(args.healthy, unit),
        gone_at=parse_fraction(args.gone_at, "--gone-at", allow_one=True),
        settle=parse_settle(args.settle),
        guards=tuple(args.guard),
        cgroup=args.cgroup,
        work=args.work,
    )


def judging_from_args(args: argparse.Namespace) -> tuple[Symptom, TrialConfig]:
    """The symptom and the trial configuration, its design checked before any work."""
    from knockout.measure.symptoms import parse_symptom

    symptom = parse_symptom(args.symptom, higher_is_better=args.higher_is_better)
    config = config_from_args(args, symptom.unit)
    # planning the looks refuses a design that can reach no verdict (too few windows)
    config.design(symptom.higher_is_better, symptom.unit).looks  # noqa: B018
    return symptom, config


def parse_settle(text: str | None) -> float | None:
    """``--settle``: a duration, ``0`` for none, or None for the default."""
    if text is None:
        return None
    if text.strip() in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration(text)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, a ``--save`` file or ``--report`` directory that is unwritable."""
    from knockout.report.save import check_writable

    if args.save:
        check_writable(args.save)
    if args.report:
        from pathlib import Path

        directory = Path(args.report)
        if directory.exists() and not directory.is_dir():
            raise BadInput(f"--report {directory}: not a directory; name a directory to write")
        check_writable(directory / "report.json")


def write_outputs(args: argparse.Namespace, doc: dict[str, Any], target: Target) -> None:
    """``--save`` and ``--report`` (the latter while ``target`` is still open: it reads code)."""
    if args.save:
        from knockout.report.save import save_json

        save_json(args.save, doc)
    if args.report:
        from knockout.listing import Disassembler
        from knockout.report import write_report
        from knockout.report.target import describe_kernel, describe_process

        info = describe_process(target.pid) if target.pid is not None else describe_kernel()
        listing = Disassembler(target.symbols(), target.read, target.arch)
        written = write_report(doc, args.report, disassembler=listing, target_info=info)
        print(f"report: {len(written)} files in {args.report}", file=sys.stderr)
