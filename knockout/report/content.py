"""What a report says, as blocks (:mod:`knockout.report.model`), from a saved document.

Every number comes from the document; nothing is measured or judged here.
The conclusion of a search is the document's own sentence, never written
here.  The files the blocks show or link (plots, folded stacks, flame
graphs) are named by :class:`TrialFiles` and :class:`ReportFiles`, made by
:func:`knockout.report.write_report`.

>>> import json, pathlib
>>> doc = {"verdict": "gone", "windows": [], "symptom": "sys", "unit": "%", "reason": "r",
...        "cuts": [], "baseline": {"median": 54.0, "ci": [53.0, 55.0], "samples": [54.0]},
...        "cut": {"median": 14.0, "ci": None, "samples": [14.0]}}
>>> [b.text for b in report_blocks(doc, ReportFiles()) if isinstance(b, Heading)][:2]
['knockout trial: sys', 'Target']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from knockout.report.flame import perf_diff
from knockout.report.load import document_kind
from knockout.report.model import Block, Bullets, Code, Figure, Heading, Links, Para, Table
from knockout.report.text import format_value

__all__ = [
    "ReportFiles",
    "TrialFiles",
    "explained_text",
    "pct",
    "report_blocks",
    "trial_blocks",
]


@dataclass
class TrialFiles:
    """The files written for one trial, relative to the report's directory (None: not made)."""

    windows: str | None = None
    distribution: str | None = None
    flame_cut: str | None = None
    flame_negated: str | None = None
    folded: dict[str, str] = field(default_factory=dict)  # arm -> file


@dataclass
class ReportFiles:
    """The files of a whole report: per trial (by prefix) and the search's own plot."""

    trials: dict[str, TrialFiles] = field(default_factory=dict)
    shares: str | None = None  # climb: explained per frame; bisect: per probe


def pct(x: float | None, digits: int = 1) -> str:
    """``0.612`` -> ``61.2%``; None or NaN -> ``-``.

    >>> pct(0.6123), pct(None), pct(-0.05, 0)
    ('61.2%', '-', '-5%')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * 100:.{digits}f}%"


def _p(x: Any) -> str:
    """A p-value: ``0.00108``."""
    return "-" if x is None else f"{float(x):.3g}"


def _value(x: Any, unit: str) -> str:
    return "-" if x is None else format_value(float(x), unit)


def _ci(ci: Sequence[float] | None, unit: str) -> str:
    return f"[{_value(ci[0], unit)}, {_value(ci[1], unit)}]" if ci else "-"


def _share_ci(ci: Sequence[float] | None) -> str:
    return f"[{pct(ci[0])}, {pct(ci[1])}]" if ci else "-"


def healthy_text(doc: dict[str, Any]) -> str:
    """``13% (--healthy)`` or ``zero (no --healthy)``."""
    healthy, source = doc.get("healthy"), doc.get("healthy_source")
    if healthy is None or source == "zero":
        return "the symptom's zero (no --healthy)"
    return f"{_value(healthy, str(doc.get('unit') or ''))} ({source or '--healthy'})"


def explained_text(trial: dict[str, Any]) -> str:
    """``95.2% [94.0%, 95.9%] of the excess over healthy ...``, or why it is undefined."""
    if trial.get("explained") is None:
        if trial.get("verdict") == "breaks":
            return "none: the cut stopped the work, which is no fix"
        return f"undefined: the baseline is not above healthy, {healthy_text(trial)}"
    ci = trial.get("explained_ci")
    return (
        f"{pct(trial['explained'])} {_share_ci(ci)} of the excess over healthy, "
        f"{healthy_text(trial)}"
    )


# -- the target ------------------------------------------------------------------------------


def _target_blocks(doc: dict[str, Any], trials: Sequence[dict[str, Any]]) -> list[Block]:
    out: list[Block] = [Heading(2, "Target")]
    info = doc.get("target_info")
    if isinstance(info, dict) and info:
        rows = tuple((str(k), str(v)) for k, v in info.items() if v not in (None, ""))
        out.append(Table(("", ""), rows))
        return out
    named = doc.get("target")
    seen = [str(named)] if named else []
    for t in trials:
        for c in t.get("cuts") or []:
            if c.get("target") and str(c["target"]) not in seen:
                seen.append(str(c["target"]))
    out.append(Para(", ".join(seen) or "not saved", lead="Target:"))
    out.append(
        Para(
            "the saved JSON has no target_info, so the process's command line and build-id "
            "(or the kernel release) are not shown; a report written live (--report) saves them"
        )
    )
    return out


# -- one trial --------------------------------------------------------------------------------


def _cut_rows(trial: dict[str, Any], annotated: dict[str, Any] | None) -> list[tuple[str, ...]]:
    decoded = {c.get("location"): c for c in (annotated or {}).get("cuts") or []}
    mechanism = ", ".join(trial.get("mechanisms") or []) or "-"
    rows: list[tuple[str, ...]] = []
    for c in trial.get("cuts") or []:
        known = decoded.get(c.get("location"), {})
        before = "; ".join(known.get("before") or [])
        after = "; ".join(known.get("after") or [])
        rows.append(
            (
                str(c.get("location", "-")),
                str(c.get("address", "-")),
                str(c.get("intent", "-")),
                known.get("source") or "-",
                str(c.get("old", "")) + (f" ({before})" if before else ""),
                str(c.get("new", "")) + (f" ({after})" if after else ""),
                mechanism,
            )
        )
    return rows


def _arm_rows(trial: dict[str, Any]) -> list[tuple[str, ...]]:
    unit = str(trial.get("unit") or "")
    per_arm = trial.get("windows_per_arm") or {}
    rows: list[tuple[str, ...]] = []
    for arm in ("baseline", "cut"):
        summary = trial.get(arm) or {}
        n = per_arm.get(arm, len(summary.get("samples") or []))
        rows.append(
            (arm, str(n), _value(summary.get("median"), unit), _ci(summary.get("ci"), unit))
        )
    return rows


def _tests_rows(trial: dict[str, Any]) -> list[tuple[str, str]]:
    look = trial.get("look") or {}
    rows = [
        ("deciding p", _p(trial.get("p_value"))),
        ("p(reduced)", _p(trial.get("p_reduced"))),
        ("p(gone)", _p(trial.get("p_gone"))),
        ("p(not gone)", _p(trial.get("p_not_gone"))),
        ("p(within min-effect)", _p(trial.get("p_within"))),
        ("p(not worse)", _p(trial.get("p_not_worse"))),
        ("look", f"{look['n']} windows/arm at level {_p(look.get('alpha'))}" if look else "-"),
        ("alpha / alpha persists", f"{_p(trial.get('alpha'))} / {_p(trial.get('alpha_persists'))}"),
        (
            "min effect / gone at",
            f"{pct(trial.get('min_effect'), 0)} / {pct(trial.get('gone_at'), 0)}",
        ),
    ]
    return [r for r in rows if r[1] not in ("-", "- / -")]


def _window_rows(trial: dict[str, Any]) -> list[tuple[str, ...]]:
    unit = str(trial.get("unit") or "")
    windows = trial.get("windows") or []
    t0 = windows[0].get("start") if windows else None
    rows: list[tuple[str, ...]] = []
    for w in windows:
        start = w.get("start")
        at = f"{float(start) - float(t0):.2f}" if start is not None and t0 is not None else "-"
        work = w.get("work")
        rows.append(
            (
                str(w.get("index", "-")),
                str(w.get("arm", "-")),
                at,
                _value(w.get("value"), unit),
                "-" if work is None else f"{float(work):.4g}",
                "-" if w.get("samples") is None else str(w["samples"]),
            )
        )
    return rows


def _diff_table(trial: dict[str, Any]) -> Table | None:
    profiles = trial.get("profiles") or {}
    base, cut = profiles.get("baseline"), profiles.get("cut")
    if (base or {}).get("folded") or (cut or {}).get("folded"):
        rows = perf_diff(base, cut)
        values = [
            (r.symbol, r.baseline, r.delta, r.cut, r.baseline_total, r.cut_total) for r in rows
        ]
    elif trial.get("profile_diff"):
        values = [
            (h["symbol"], h["baseline"], h["delta"], h["cut"], h["baseline_total"], h["cut_total"])
            for h in trial["profile_diff"]
        ]
    else:
        return None
    return Table(
        ("Baseline", "Delta", "Cut", "Baseline incl.", "Cut incl.", "Symbol"),
        tuple(
            (pct(b), f"{d * 100:+.1f}", pct(c), pct(bt), pct(ct), str(s))
            for s, b, d, c, bt, ct in values
        ),
        ("r", "r", "r", "r", "r", "l"),
        caption="perf diff style: self shares of each arm's busy samples, Delta in points",
    )


def trial_blocks(
    trial: dict[str, Any],
    files: TrialFiles | None,
    level: int = 2,
    annotated: dict[str, Any] | None = None,
) -> list[Block]:
    """The blocks of one trial: verdict, arms, tests, cuts, windows, heat, notes."""
    files = files or TrialFiles()
    verdict = str(trial.get("verdict", "inconclusive"))
    out: list[Block] = [
        Para(str(trial.get("reason", "")), lead=f"Verdict: {verdict}.", verdict=verdict),
        Para(f"{trial.get('symptom', '?')}, healthy level {healthy_text(trial)}", lead="Symptom:"),
        Para(explained_text(trial), lead="Explained:"),
    ]
    effect = trial.get("effect")
    if effect is not None:
        ci = trial.get("effect_ci")
        out.append(
            Para(
                f"{effect * 100:+.1f}%"
                + (f" [{ci[0] * 100:+.1f}%, {ci[1] * 100:+.1f}%]" if ci else ""),
                lead="Effect of the cut:",
            )
        )
    out.append(
        Table(("arm", "windows", "median", "95% CI"), tuple(_arm_rows(trial)), ("l", "r", "r", "r"))
    )
    out.append(Table(("test", "value"), tuple(_tests_rows(trial)), ("l", "r"), caption="tests"))
    if trial.get("breaks"):
        out += [Para("the cut stopped the work:", lead="Breaks:"), Bullets(tuple(trial["breaks"]))]
    out.append(Heading(level + 1, "Cuts"))
    out.append(
        Table(
            ("location", "address", "intent", "source", "bytes before", "bytes after", "mechanism"),
            tuple(_cut_rows(trial, annotated)),
        )
    )
    out += _window_blocks(trial, files, level)
    out += _heat_blocks(trial, files, level)
    notes = ([trial["stopped"]] if trial.get("stopped") else []) + list(trial.get("notes") or [])
    if notes:
        out += [Heading(level + 1, "Notes"), Bullets(tuple(str(n) for n in notes))]
    return out


def _window_blocks(trial: dict[str, Any], files: TrialFiles, level: int) -> list[Block]:
    out: list[Block] = [Heading(level + 1, "Windows")]
    if files.windows:
        out.append(Figure(files.windows, "windows in the order measured (ABBA), coloured by arm"))
    if files.distribution:
        out.append(Figure(files.distribution, "window values per arm, median and 95% CI"))
    settle = trial.get("settle")
    if settle:
        out.append(Para(f"measurement started {settle:g} s after each switch between the arms"))
    out.append(
        Table(
            ("#", "arm", "start (s)", "value", "work", "perf samples"),
            tuple(_window_rows(trial)),
            ("r", "l", "r", "r", "r", "r"),
        )
    )
    return out


def _heat_blocks(trial: dict[str, Any], files: TrialFiles, level: int) -> list[Block]:
    out: list[Block] = [Heading(level + 1, "Where the heat moved")]
    if trial.get("heat"):
        out.append(Para(str(trial["heat"]), lead="Heat:"))
    profiles = trial.get("profiles") or {}
    busy = [f"{arm} {(profiles.get(arm) or {}).get('busy', 0)}" for arm in ("baseline", "cut")]
    table = _diff_table(trial)
    if table is None:
        out.append(Para("no profiles were recorded in this trial"))
        return out
    out.append(Para(", ".join(busy), lead="Busy perf samples:"))
    out.append(table)
    if files.flame_cut:
        out.append(Figure(files.flame_cut, "differential flame graph: the cut arm's widths"))
    if files.flame_negated:
        out.append(
            Figure(
                files.flame_negated, "negated view: the baseline's widths (vanished frames show)"
            )
        )
    if files.folded:
        out.append(
            Links(tuple((f"folded stacks, {arm}", path) for arm, path in files.folded.items()))
        )
    return out


# -- searches ---------------------------------------------------------------------------------


def _cut_text(cut: dict[str, Any] | None) -> str:
    if not cut:
        return "-"
    via = f" ({cut['via']})" if cut.get("via") else ""
    return f"{cut.get('location', '?')} {cut.get('intent', '')}".strip() + via


def _frame_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for f in doc.get("frames") or []:
        refused = f.get("refused")
        rows.append(
            (
                str(f.get("depth", "-")),
                str(f.get("symbol", "?")),
                (refused if refused.startswith("refused") else f"refused: {refused}")
                if refused
                else _cut_text(f.get("cut")),
                str(f.get("verdict") or ("refused" if refused else "-")),
                f"{pct(f.get('explained'))} {_share_ci(f.get('explained_ci'))}"
                if f.get("explained") is not None
                else "-",
                ", ".join(f.get("heat_moved_to") or []) or "-",
            )
        )
    return rows


def _cost_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for f in doc.get("frames") or []:
        calls, cost = f.get("calls_per_s"), f.get("cost_per_call_s")
        fanout = f.get("fanout") or {}
        rows.append(
            (
                str(f.get("symbol", "?")),
                "-" if calls is None else f"{float(calls):.4g}",
                "-" if cost is None else format_value(float(cost), "s"),
                ", ".join(f"{k} x{float(v):.4g}" for k, v in fanout.items()) or "-",
            )
        )
    return rows


def _climb_blocks(doc: dict[str, Any], files: ReportFiles) -> list[Block]:
    out: list[Block] = [
        Para(
            f"which frame of the hot stack makes {doc.get('symptom', 'the symptom')} "
            f"(healthy level {healthy_text(doc)})? climbed from the leaf towards the root",
            lead="Question:",
        ),
        Para(str(doc.get("conclusion") or "the climb saved no conclusion"), lead="Conclusion:"),
        Para(str(doc.get("culprit") or "none"), lead="Culprit:"),
    ]
    stack = doc.get("stack") or []
    if stack:
        out += [
            Heading(2, "Hot stack (leaf first)"),
            Table(
                ("symbol", "total", "self"),
                tuple(
                    (str(s.get("symbol")), pct(s.get("total")), pct(s.get("self"))) for s in stack
                ),
                ("l", "r", "r"),
            ),
        ]
    out += [
        Heading(2, "Path: frames from the leaf to the root"),
        Table(
            ("depth", "frame", "cut", "verdict", "explained [95% CI]", "heat moved to"),
            tuple(_frame_rows(doc)),
            ("r", "l", "l", "l", "r", "l"),
        ),
    ]
    if files.shares:
        out.append(Figure(files.shares, "explained share per frame, with its 95% CI"))
    out += [
        Heading(2, "Cost split"),
        Table(
            ("frame", "calls/s", "cost per call", "fan-out (calls per call)"),
            tuple(_cost_rows(doc)),
            ("l", "r", "r", "l"),
        ),
    ]
    return out


def _bisect_blocks(doc: dict[str, Any], files: ReportFiles) -> list[Block]:
    region = doc.get("region") or {}
    symbol = region.get("symbol", doc.get("function", "?"))
    where = f"{symbol} {region.get('start', '?')}..{region.get('end', '?')}"
    out: list[Block] = [
        Para(
            f"where in {doc.get('function', '?')} is the code that makes "
            f"{doc.get('symptom', 'the symptom')}? bisected over its return points",
            lead="Question:",
        ),
    ]
    if doc.get("conclusion"):
        out.append(Para(str(doc["conclusion"]), lead="Conclusion:"))
    out += [
        Para(where + f" (confidence {pct(doc.get('confidence'))})", lead="Region:"),
        Bullets(
            tuple(str(line) for line in region.get("lines") or []) or ("no source lines saved",)
        ),
        Heading(2, "Path: probes in the order tried"),
        Table(
            ("#", "point", "address", "verdict", "explained", "confidence"),
            tuple(
                (
                    str(i),
                    str(p.get("point", "?")),
                    str(p.get("address", "-")),
                    str(p.get("verdict") or "-"),
                    pct(p.get("explained")),
                    pct(p.get("confidence")),
                )
                for i, p in enumerate(doc.get("probes") or [], start=1)
            ),
            ("r", "l", "l", "l", "r", "r"),
        ),
    ]
    if files.shares:
        out.append(Figure(files.shares, "explained share per probe, in the order tried"))
    return out


def _disassembly_blocks(doc: dict[str, Any]) -> list[Block]:
    record = doc.get("disassembly")
    out: list[Block] = []
    if isinstance(record, dict):
        out.append(Heading(2, f"Annotated disassembly: {record.get('function')}"))
        busy = record.get("busy") or {}
        out.append(
            Para(
                "=> marks the instructions a cut rewrote; '; calls' is the share of busy samples "
                "whose stack went through that call, '; self' the share sampled on the "
                f"instruction (baseline -> cut; busy samples {busy.get('baseline', 0)} -> "
                f"{busy.get('cut', 0)})"
            )
        )
        if record.get("note"):
            out.append(Para(str(record["note"]), lead="Note:"))
        out.append(Code(tuple(record.get("listing") or [])))
        return out
    out.append(Heading(2, "Disassembly"))
    out.append(
        Para(
            "this report was rendered from saved JSON alone, which holds no code bytes beyond "
            "each cut's (see the cuts' bytes above); a report written live (--report) "
            "annotates the decisive function"
        )
    )
    return out


def report_blocks(doc: dict[str, Any], files: ReportFiles) -> list[Block]:
    """The whole report of ``doc`` (a trial, a climb or a bisect)."""
    from knockout.report.load import trials_of

    kind = document_kind(doc)
    trials = trials_of(doc)
    annotated = doc.get("disassembly") if isinstance(doc.get("disassembly"), dict) else None
    if kind == "trial":
        cuts = ", ".join(
            f"{c.get('location')} {c.get('intent', '')}" for c in doc.get("cuts") or []
        )
        out: list[Block] = [Heading(1, f"knockout trial: {doc.get('symptom', '?')}")]
        out.append(
            Para(
                f"does cutting {cuts or 'the code'} remove {doc.get('symptom', 'the symptom')}?",
                lead="Question:",
            )
        )
        out += _target_blocks(doc, [doc])
        out += [Heading(2, "Result")]
        out += trial_blocks(doc, files.trials.get("trial"), 2, annotated)
        out += _disassembly_blocks(doc)
        return out
    title = f"knockout {kind}: {doc.get('symptom', '?')}"
    out = [Heading(1, title)]
    out += _target_blocks(doc, [t for _, _, t in trials])
    out += _climb_blocks(doc, files) if kind == "climb" else _bisect_blocks(doc, files)
    out += _disassembly_blocks(doc)
    for prefix, heading, trial in trials:
        out.append(Heading(2, f"Trial of {heading}"))
        out += trial_blocks(trial, files.trials.get(prefix), 2, annotated)
    return out
