"""Profiles of windows and where the heat moved between the baseline and the cut.

Shares are fractions of the *busy* samples (idle samples -- the swapper,
pid 0 -- are counted apart): a cut that removes work makes the machine idler,
and the question is where the remaining work went.  ``self`` is the share of
samples whose leaf frame is the symbol, ``total`` the share whose stack
contains it anywhere (counted once per sample).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from knockout.measure.perf import Sample

__all__ = [
    "CallEdge",
    "HeatShift",
    "Profile",
    "describe_heat",
    "folded",
    "heat_diff",
    "merge",
    "profile_of",
]

#: the name of a sample perf recorded without any frame
NO_STACK = "[no stack]"
#: the minus sign of printed changes
MINUS = "\u2212"


class CallEdge(NamedTuple):
    """A call seen on sampled stacks: ``caller`` called ``callee``, returning to ``return_ip``.

    ``return_ip`` is as perf printed the caller's frame (see
    :class:`~knockout.measure.perf.Sample`), in ``dso``.
    """

    caller: str
    callee: str
    return_ip: int
    dso: str


@dataclass
class Profile:
    """Counts of samples by symbol, stack and call edge, for one window or several merged.

    ``stacks`` counts whole stacks, root first (the folded form flame graphs
    read); ``calls`` counts, per call edge, the busy samples with that edge on
    their stack (once per sample).
    """

    busy: int = 0
    idle: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    total_counts: Counter[str] = field(default_factory=Counter)
    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)
    calls: Counter[CallEdge] = field(default_factory=Counter)
    #: busy samples by the sampled instruction (the leaf frame's ip and dso)
    leaf_ips: Counter[tuple[str, int]] = field(default_factory=Counter)

    def self_share(self, symbol: str) -> float:
        """Fraction of busy samples whose leaf is ``symbol``."""
        return self.self_counts[symbol] / self.busy if self.busy else 0.0

    def total_share(self, symbol: str) -> float:
        """Fraction of busy samples with ``symbol`` anywhere in the stack."""
        return self.total_counts[symbol] / self.busy if self.busy else 0.0

    @property
    def idle_share(self) -> float:
        """Fraction of all samples that were idle."""
        n = self.busy + self.idle
        return self.idle / n if n else 0.0

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` symbols with the largest self share."""
        return [(sym, c / self.busy) for sym, c in self.self_counts.most_common(n)]

    def as_dict(self, n: int = 20, stacks: int = 2000) -> dict[str, Any]:
        """JSON-ready form: sample counts, the top self shares, and (the ``stacks`` most
        common) folded stacks, call edges and sampled instructions, with their counts."""
        return {
            "busy": self.busy,
            "idle": self.idle,
            "top": [list(t) for t in self.top(n)],
            "folded": [[";".join(k), c] for k, c in self.stacks.most_common(stacks)],
            "calls": [
                {
                    "caller": e.caller,
                    "callee": e.callee,
                    "return_ip": e.return_ip,
                    "dso": e.dso,
                    "samples": c,
                }
                for e, c in self.calls.most_common(stacks)
            ],
            "ips": [[dso, ip, c] for (dso, ip), c in self.leaf_ips.most_common(stacks)],
        }


def profile_of(samples: Iterable[Sample]) -> Profile:
    """Count ``samples`` into a :class:`Profile`."""
    prof = Profile()
    for s in samples:
        if s.idle:
            prof.idle += 1
            continue
        prof.busy += 1
        stack = s.stack or (NO_STACK,)
        prof.self_counts[stack[0]] += 1
        prof.total_counts.update(set(stack))
        prof.stacks[stack[::-1]] += 1
        if s.ips:
            prof.leaf_ips[(s.dsos[0], s.ips[0])] += 1
        if len(s.ips) == len(s.stack):
            prof.calls.update(
                {
                    CallEdge(s.stack[i + 1], s.stack[i], s.ips[i + 1], s.dsos[i + 1])
                    for i in range(len(s.stack) - 1)
                }
            )
    return prof


def merge(profiles: Iterable[Profile]) -> Profile:
    """One profile of all ``profiles`` (e.g. all windows of one arm)."""
    out = Profile()
    for p in profiles:
        out.busy += p.busy
        out.idle += p.idle
        out.self_counts.update(p.self_counts)
        out.total_counts.update(p.total_counts)
        out.stacks.update(p.stacks)
        out.calls.update(p.calls)
        out.leaf_ips.update(p.leaf_ips)
    return out


def folded(profile: Profile) -> list[str]:
    """The profile's stacks as ``root;...;leaf COUNT`` lines (flamegraph.pl, speedscope, pprof).

    >>> from knockout.measure.perf import Sample
    >>> folded(profile_of([Sample("a", 1, 1, 0.0, ("leaf", "main"))] * 3))
    ['main;leaf 3']
    """
    return [f"{';'.join(stack)} {n}" for stack, n in sorted(profile.stacks.items())]


@dataclass(frozen=True)
class HeatShift:
    """One symbol's share of busy samples, baseline vs cut."""

    symbol: str
    baseline: float  # self share
    cut: float
    baseline_total: float  # inclusive share
    cut_total: float

    @property
    def delta(self) -> float:
        """Change in self share, in fractions (-0.07: seven points less)."""
        return self.cut - self.baseline

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "symbol": self.symbol,
            "baseline": self.baseline,
            "cut": self.cut,
            "delta": self.delta,
            "baseline_total": self.baseline_total,
            "cut_total": self.cut_total,
        }


def heat_diff(baseline: Profile, cut: Profile, top: int = 8) -> list[HeatShift]:
    """The symbols hot in either arm, largest change of self share first."""
    names = {s for s, _ in baseline.top(top)} | {s for s, _ in cut.top(top)}
    shifts = [
        HeatShift(
            n,
            baseline.self_share(n),
            cut.self_share(n),
            baseline.total_share(n),
            cut.total_share(n),
        )
        for n in names
    ]
    shifts.sort(key=lambda h: (-abs(h.delta), h.symbol))
    return shifts[:top]


def _points(delta: float) -> str:
    """``-0.07`` -> ``"\\u22127%"`` (a real minus sign, as in the notebook)."""
    sign = "+" if delta >= 0 else MINUS
    return f"{sign}{abs(delta) * 100:.0f}%"


def _significant(h: HeatShift, busy: tuple[int, int], threshold: float) -> bool:
    """A change of at least ``threshold`` points and 3 standard errors of sampling."""
    if abs(h.delta) < threshold:
        return False
    if not all(busy):
        return True
    var = h.baseline * (1 - h.baseline) / busy[0] + h.cut * (1 - h.cut) / busy[1]
    return abs(h.delta) >= 3 * math.sqrt(var)


def describe_heat(
    shifts: Sequence[HeatShift],
    verdict: str,
    *,
    busy: tuple[int, int] = (0, 0),
    threshold: float = 0.02,
) -> str:
    """One line: ``shrink_slab -7%, mem_cgroup_iter +6%: heat moved, symptom persists``.

    Changes are in percentage points of the busy samples; those under
    ``threshold``, or within sampling noise given the arms' ``busy`` sample
    counts, are left out.
    """
    moved = [h for h in shifts if _significant(h, busy, threshold)][:4]
    symptom = {
        "gone": "symptom gone",
        "reduced": "symptom reduced",
        "persists": "symptom persists",
        "breaks": "the cut broke the work",
    }.get(verdict, "symptom undecided")
    if not moved:
        return f"profile unchanged: {symptom}"
    parts = ", ".join(f"{h.symbol} {_points(h.delta)}" for h in moved)
    gained = any(h.delta > 0 for h in moved)
    lost = any(h.delta < 0 for h in moved)
    heat = "heat moved" if gained and lost else ("heat gone" if lost else "heat grew")
    return f"{parts}: {heat}, {symptom}"
