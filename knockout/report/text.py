"""The trial result as terminal text (rich): what ``knockout trial`` prints.

The report (markdown, HTML, JSON) builds on the same pieces; this module
only renders, it measures and judges nothing.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from knockout.trial import TrialResult

__all__ = ["VERDICT_STYLES", "explained_line", "format_value", "render_trial"]

#: how each verdict is coloured on a terminal
VERDICT_STYLES = {
    "gone": "bold green",
    "reduced": "bold cyan",
    "persists": "bold red",
    "inconclusive": "bold yellow",
    "breaks": "bold magenta",
}


def format_value(value: float, unit: str) -> str:
    """``54.1%``, ``0.52s``, ``3.1 tasks``.

    >>> format_value(54.123, "%"), format_value(3.14159, "tasks")
    ('54.12%', '3.142 tasks')
    """
    return f"{value:.4g}{unit if unit in ('%', 's') else ' ' + unit if unit else ''}"


def _ci(ci: tuple[float, float] | None, unit: str) -> str:
    return f"[{format_value(ci[0], unit)}, {format_value(ci[1], unit)}]" if ci else "-"


def render_trial(out: Console, r: TrialResult) -> None:
    """Print ``r``: the arms, the effect, the verdict and why, where the heat moved, notes."""
    j = r.judgement
    assert j is not None
    table = Table(title=escape(f"{r.symptom}: baseline vs cut"), show_edge=False)
    for col in ("arm", "windows", "median", "95% CI"):
        table.add_column(col)
    for name, arm in (("baseline", j.baseline), ("cut", j.cut)):
        table.add_row(
            name, str(len(arm.samples)), format_value(arm.median, r.unit), _ci(arm.ci, r.unit)
        )
    out.print(table)
    eci = f" (CI {j.effect_ci[0]:+.0%} .. {j.effect_ci[1]:+.0%})" if j.effect_ci else ""
    out.print(
        f"effect {j.effect:+.1%}{eci}; p(reduced)={j.p_reduced:.2g}, "
        f"p(within ±{j.design.min_effect:.0%})={j.p_equivalence:.2g}"
    )
    out.print(escape(explained_line(r)))
    style = VERDICT_STYLES.get(r.verdict, "bold")
    out.print(f"[{style}]{r.verdict}[/]: {escape(r.reason)}")
    if r.heat:
        out.print(f"heat: {escape(r.heat)}")
        _heat_table(out, r)
    if r.mechanisms:
        out.print(f"applied by: {', '.join(r.mechanisms)}")
    for line in ([r.stopped] if r.stopped else []) + r.notes:
        out.print(f"[yellow]note:[/] {escape(line)}")


def explained_line(r: TrialResult) -> str:
    """``explained 61% of the excess over healthy 13% (--healthy) (CI 55%..67%)``."""
    j = r.judgement
    assert j is not None
    if j.healthy is None:
        level = "zero time per unit of work (no --healthy)"
    else:
        level = f"{format_value(j.healthy, r.unit)} ({j.healthy_source})"
    if j.explained != j.explained:  # NaN: no excess over healthy
        return f"explained: undefined, the baseline is not above healthy {level}"
    ci = f" (CI {j.explained_ci[0]:.0%}..{j.explained_ci[1]:.0%})" if j.explained_ci else ""
    return f"explained {j.explained:.0%} of the excess over healthy {level}{ci}"


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
