"""Folded stacks, differential flame graphs (SVG) and a ``perf diff``-style table.

A profile's ``folded`` stacks (root first, ``[["main;f;g", 12], ...]`` in the
JSON) are written as ``main;f;g 12`` lines -- the format flamegraph.pl,
speedscope and pprof read.  The differential flame graph compares the two
arms the way ``difffolded.pl | flamegraph.pl`` does, drawn here without
either: each frame's width is its share of the arm's busy samples (the arms
are normalized, as ``perf diff`` compares percentages), its colour the
change of its inclusive share from baseline to cut -- red grew, blue shrank,
white unchanged.  The *cut* view is drawn with the cut arm's widths; the
*negated* view with the baseline's, so that frames the cut made vanish still
show (as wide blue frames).

>>> base = {"busy": 4, "folded": [["main;f;g", 3], ["main;h", 1]]}
>>> cut = {"busy": 2, "folded": [["main;h", 2]]}
>>> folded_lines(base)
['main;f;g 3', 'main;h 1']
>>> [(r.symbol, round(r.baseline, 2), round(r.cut, 2)) for r in perf_diff(base, cut)]
[('h', 0.25, 1.0), ('g', 0.75, 0.0), ('main', 0.0, 0.0), ('f', 0.0, 0.0)]
>>> import xml.etree.ElementTree as ET
>>> ET.fromstring(flame_svg(base, cut, view="negated")).tag
'{http://www.w3.org/2000/svg}svg'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape

from knockout.measure.profile import HeatShift

__all__ = [
    "FlameNode",
    "View",
    "flame_svg",
    "flame_tree",
    "folded_counts",
    "folded_lines",
    "perf_diff",
]

View = Literal["cut", "negated"]

#: the graph's size and the height of one frame, in pixels
WIDTH = 1200
FRAME = 16
#: frames narrower than this fraction of the graph are left out
MIN_SHARE = 0.002
#: width of a character of the frame labels, in pixels (12 px sans-serif)
CHAR = 7.0


def folded_counts(profile: dict[str, Any] | None) -> Counter[tuple[str, ...]]:
    """The profile's folded stacks (root first) with their sample counts."""
    out: Counter[tuple[str, ...]] = Counter()
    for stack, count in (profile or {}).get("folded") or []:
        out[tuple(str(stack).split(";"))] += int(count)
    return out


def folded_lines(profile: dict[str, Any] | None) -> list[str]:
    """``root;...;leaf COUNT`` lines, most samples first (as saved)."""
    return [f"{stack} {int(count)}" for stack, count in (profile or {}).get("folded") or []]


def _busy(profile: dict[str, Any] | None, counts: Counter[tuple[str, ...]]) -> int:
    """The arm's busy samples: saved, else the sum of its stacks."""
    saved = (profile or {}).get("busy")
    return int(saved) if saved else sum(counts.values())


@dataclass
class FlameNode:
    """One frame of the merged tree: its samples on stacks through it, per arm."""

    name: str
    baseline: int = 0
    cut: int = 0
    children: dict[str, FlameNode] = field(default_factory=dict)

    def child(self, name: str) -> FlameNode:
        """The child frame ``name``, made on first use."""
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = FlameNode(name)
        return node


def flame_tree(baseline: Counter[tuple[str, ...]], cut: Counter[tuple[str, ...]]) -> FlameNode:
    """Both arms' stacks merged into one tree under ``all``."""
    root = FlameNode("all")
    for arm, counts in (("baseline", baseline), ("cut", cut)):
        for stack, n in counts.items():
            node = root
            setattr(node, arm, getattr(node, arm) + n)
            for name in stack:
                node = node.child(name)
                setattr(node, arm, getattr(node, arm) + n)
    return root


def _shares(counts: Counter[tuple[str, ...]], busy: int) -> tuple[Counter[str], Counter[str]]:
    leaf: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for stack, n in counts.items():
        if stack:
            leaf[stack[-1]] += n
        total.update(dict.fromkeys(set(stack), n))
    return leaf, total


def perf_diff(
    baseline: dict[str, Any] | None, cut: dict[str, Any] | None, top: int = 20
) -> list[HeatShift]:
    """Symbols of both arms, largest change of self share first (ties: by name)."""
    counts = folded_counts(baseline), folded_counts(cut)
    busy = _busy(baseline, counts[0]) or 1, _busy(cut, counts[1]) or 1
    (bself, btotal), (cself, ctotal) = _shares(counts[0], busy[0]), _shares(counts[1], busy[1])
    names = set(btotal) | set(ctotal)
    rows = [
        HeatShift(
            n, bself[n] / busy[0], cself[n] / busy[1], btotal[n] / busy[0], ctotal[n] / busy[1]
        )
        for n in names
    ]
    rows.sort(key=lambda r: (-abs(r.delta), -max(r.baseline_total, r.cut_total), r.symbol))
    return rows[:top]


def _colour(delta: float, scale: float) -> str:
    """Red for a share that grew, blue for one that shrank, white for none."""
    strength = min(1.0, abs(delta) / scale) if scale > 0 else 0.0
    fade = round(245 - 190 * strength)
    if delta > 0:
        return f"rgb(245,{fade},{fade})"
    if delta < 0:
        return f"rgb({fade},{fade},245)"
    return "rgb(245,245,245)"


def _depth(node: FlameNode, wide: Callable[[FlameNode], bool]) -> int:
    """Levels of the frames ``wide`` enough to draw."""
    if not wide(node):
        return 0
    return 1 + max((_depth(c, wide) for c in node.children.values()), default=0)


def _deltas(node: FlameNode, busy: tuple[int, int]) -> Iterable[float]:
    yield node.cut / busy[1] - node.baseline / busy[0]
    for c in node.children.values():
        yield from _deltas(c, busy)


@dataclass
class _Layout:
    view: View
    busy: tuple[int, int]
    scale: float
    height: int
    parts: list[str]

    def width_of(self, node: FlameNode) -> float:
        share = node.cut / self.busy[1] if self.view == "cut" else node.baseline / self.busy[0]
        return share * WIDTH

    def draw(self, node: FlameNode, x: float, level: int) -> None:
        width = self.width_of(node)
        if width < MIN_SHARE * WIDTH:
            return
        base, cut = node.baseline / self.busy[0], node.cut / self.busy[1]
        delta = cut - base
        y = self.height - (level + 1) * FRAME
        tip = f"{node.name}: baseline {base:.1%}, cut {cut:.1%} ({delta * 100:+.1f} points)"
        label = node.name if len(node.name) * CHAR <= width - 4 else ""
        if not label and width > 4 * CHAR:
            label = node.name[: int((width - 4) / CHAR) - 2] + ".."
        self.parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{FRAME - 1}" '
            f'fill="{_colour(delta, self.scale)}" stroke="#999" stroke-width="0.3"/>'
            + (f'<text x="{x + 2:.1f}" y="{y + FRAME - 4}">{escape(label)}</text>' if label else "")
            + "</g>"
        )
        for name in sorted(node.children):
            child = node.children[name]
            self.draw(child, x, level + 1)
            x += self.width_of(child)


def flame_svg(
    baseline: dict[str, Any] | None,
    cut: dict[str, Any] | None,
    *,
    view: View = "cut",
    title: str = "",
) -> str:
    """The differential flame graph of two saved profiles, as an SVG document."""
    counts = folded_counts(baseline), folded_counts(cut)
    busy = _busy(baseline, counts[0]) or 1, _busy(cut, counts[1]) or 1
    root = flame_tree(*counts)
    scale = max((abs(d) for d in _deltas(root, busy)), default=0.0)
    layout = _Layout(view, busy, scale, 0, [])
    layout.height = (_depth(root, lambda n: layout.width_of(n) >= MIN_SHARE * WIDTH) + 2) * FRAME
    height = layout.height
    layout.draw(root, 0.0, 0)
    widths = "the cut arm's" if view == "cut" else "the baseline's (negated view)"
    heading = title or "differential flame graph"
    legend = (
        f"{heading}: widths are {widths} shares of busy samples; "
        "red grew under the cut, blue shrank"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>'
        f'<text x="4" y="14" font-size="13">{escape(legend)}</text>'
        f"<desc>{escape(legend)}</desc>" + "".join(layout.parts) + "</svg>\n"
    )
