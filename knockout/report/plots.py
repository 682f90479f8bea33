"""The report's plots, drawn with matplotlib's Agg backend (no display needed).

matplotlib is imported when a plot is drawn, never when knockout starts.
Each function writes one PNG and returns nothing; the colours of the arms and
verdicts are :data:`ARM_COLOURS` and :data:`VERDICT_COLOURS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from knockout.report.text import format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ARM_COLOURS",
    "VERDICT_COLOURS",
    "Share",
    "distribution_plot",
    "shares_plot",
    "windows_plot",
]

#: baseline blue, cut orange, warm-up grey (matplotlib's tab10)
ARM_COLOURS = {"baseline": "#1f77b4", "cut": "#ff7f0e", "warmup": "#9a9a9a"}
#: the verdicts as on a terminal (knockout.report.text.VERDICT_STYLES), as RGB
VERDICT_COLOURS = {
    "gone": "#2ca02c",
    "reduced": "#17becf",
    "persists": "#d62728",
    "inconclusive": "#bcbd22",
    "breaks": "#e377c2",
}
HEALTHY_COLOUR = "#2ca02c"
DPI = 100


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI)


def _ylabel(trial: dict[str, Any]) -> str:
    """The symptom (its kind only, when the whole spelling is long) and its unit."""
    unit = str(trial.get("unit") or "")
    symptom = str(trial.get("symptom") or "symptom")
    if len(symptom) > 28:
        symptom = symptom.split(":", 1)[0] + ": ..." if ":" in symptom else symptom[:25] + "..."
    return symptom + (f" ({unit})" if unit else "")


def _healthy(ax: Axes, trial: dict[str, Any]) -> None:
    healthy = trial.get("healthy")
    if healthy is None or trial.get("healthy_source") == "zero":
        return
    unit = str(trial.get("unit") or "")
    ax.axhline(
        float(healthy),
        color=HEALTHY_COLOUR,
        linestyle="--",
        linewidth=1.2,
        label=f"healthy {format_value(float(healthy), unit)}",
    )


def windows_plot(trial: dict[str, Any], path: Path) -> None:
    """The windows over time in the order measured (ABBA), coloured by arm, healthy drawn."""
    windows = [w for w in trial.get("windows") or [] if w.get("value") is not None]
    fig = _figure(9, 3.6)
    ax = fig.subplots()
    have_time = bool(windows) and all(w.get("start") is not None for w in windows)
    t0 = float(windows[0]["start"]) if have_time else 0.0

    def x_of(w: dict[str, Any]) -> float:
        return float(w["start"]) - t0 if have_time else float(w["index"])

    ax.plot([x_of(w) for w in windows], [w["value"] for w in windows], color="#cccccc", lw=0.8)
    for arm in ("warmup", "baseline", "cut"):
        mine = [w for w in windows if w.get("arm") == arm]
        if mine:
            ax.scatter(
                [x_of(w) for w in mine],
                [w["value"] for w in mine],
                s=36,
                color=ARM_COLOURS[arm],
                label=f"{arm} ({len(mine)})",
                zorder=3,
            )
    _healthy(ax, trial)
    ax.set_xlabel("seconds since the first window" if have_time else "window")
    ax.set_ylabel(_ylabel(trial))
    ax.set_ylim(0, 1.12 * max((float(w["value"]) for w in windows), default=1.0) or 1.0)
    ax.set_title(f"windows in the order measured: {trial.get('verdict', '?')}")
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def distribution_plot(trial: dict[str, Any], path: Path) -> None:
    """Each arm's window values: a box, the points, the median with its CI."""
    fig = _figure(5, 3.6)
    ax = fig.subplots()
    arms = [a for a in ("baseline", "cut") if (trial.get(a) or {}).get("samples")]
    for i, arm in enumerate(arms):
        summary = trial[arm]
        values = [float(v) for v in summary["samples"]]
        ax.boxplot(
            [values],
            positions=[i],
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
        jitter = [i + 0.18 * math.sin(k * 2.39996) for k in range(len(values))]
        ax.scatter(jitter, values, s=22, color=ARM_COLOURS[arm], zorder=3, alpha=0.9)
        ci = summary.get("ci")
        if ci:
            median = float(summary["median"])
            ax.errorbar(
                [i + 0.35],
                [median],
                yerr=[[median - ci[0]], [ci[1] - median]],
                fmt="D",
                color="black",
                capsize=4,
                markersize=4,
            )
    _healthy(ax, trial)
    ax.set_xticks(range(len(arms)), [f"{a}\n({len((trial[a])['samples'])})" for a in arms])
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(_ylabel(trial))
    ax.set_title("per arm: windows, median and 95% CI")
    if trial.get("healthy_source") not in (None, "zero"):
        ax.legend(loc="best", fontsize=8)
    _save(fig, path)


class Share(NamedTuple):
    """One bar of :func:`shares_plot`: a frame or probe and its explained share."""

    label: str
    explained: float | None
    ci: Sequence[float] | None
    verdict: str | None


def shares_plot(items: Sequence[Share], path: Path, *, title: str, gone_at: float) -> None:
    """Each item's explained share with its CI, first item on top, gone level drawn."""
    fig = _figure(8, 0.9 + 0.42 * max(len(items), 1))
    ax = fig.subplots()
    ys = list(range(len(items)))[::-1]
    for y, item in zip(ys, items, strict=True):
        colour = VERDICT_COLOURS.get(item.verdict or "", "#7f7f7f")
        if item.explained is None:
            ax.text(0.0, y, f"  {item.verdict or 'not judged'}", va="center", fontsize=8)
            continue
        share = float(item.explained)
        ax.barh([y], [share], color=colour, height=0.6, alpha=0.85)
        if item.ci:
            ax.errorbar(
                [share],
                [y],
                xerr=[[share - item.ci[0]], [item.ci[1] - share]],
                fmt="none",
                color="black",
                capsize=3,
            )
        ax.text(max(share, 0) + 0.02, y + 0.22, item.verdict or "", fontsize=8)
    ax.axvline(gone_at, color=VERDICT_COLOURS["gone"], linestyle="--", lw=1, label="gone at")
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(ys, [i.label for i in items])
    ax.set_xlim(min([-0.1, *(i.ci[0] - 0.05 for i in items if i.ci)]), 1.15)
    ax.set_xlabel("explained share of the excess over healthy (95% CI)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
