"""The verdict of a trial: did the symptom go away when the code was cut?

A trial measures the symptom in windows, alternately without the cut (the
*baseline* arm) and with it (the *cut* arm).  This module turns the two lists
of window values into one of three verdicts:

* ``gone`` -- the cut reduced the symptom (one-sided exact Mann--Whitney U,
  ``p < alpha`` at the look) and the estimated reduction (ratio of medians) is
  at least ``min_effect``;
* ``persists`` -- the reduction is shown to be *smaller* than ``min_effect``
  (the lower of the two one-sided tests of a TOST equivalence test, on the
  cut arm against the baseline scaled by ``1 - min_effect``); the other side
  is reported as ``p_not_worse`` / ``p_equivalence``, so a cut that made the
  symptom clearly *worse* also "persists" and says so;
* ``inconclusive`` -- neither, after every planned look.

"Reduced" means lower for a symptom where lower is better (sys CPU, load,
wall time) and higher for one where higher is better (throughput, with
``higher_is_better``).  Symptom values must not be negative.

**Sequential looks.**  The trial judges after every complete ABBA block
(2 windows per arm) and stops at the first decided look.  Repeated looks
would inflate the error rate, so the levels are split over the planned looks
by an alpha-spending function ``alpha * (n / max_per_arm) ** rho``: each look
spends the part of the cumulative budget not yet spent, *rounded down to a
level the exact test can attain* (at 6 vs 6 windows the smallest one-sided
p-value is 1/924), and what a look cannot use carries forward to the next.
Each test therefore errs with probability at most ``alpha`` over the whole
trial (a union bound over the looks, valid whatever the correlation between
looks), for ``gone`` under no effect and for ``persists`` under an effect of
``min_effect`` or more.  ``tests/unit/test_stats.py`` checks this by
simulation.

The functions on arrays take samples along the last axis, so thousands of
synthetic trials are judged at once by the same code that judges a real one.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from knockout.errors import BadInput


@functools.cache
def _sps() -> ModuleType:
    """scipy.stats, imported on first use: it costs ~0.5 s, and every CLI command imports us."""
    return importlib.import_module("scipy.stats")


__all__ = [
    "ArmSummary",
    "Design",
    "Judgement",
    "Look",
    "Tests",
    "Verdict",
    "bootstrap_ci",
    "exact_levels",
    "judge",
    "plan_looks",
    "run_tests",
    "sequential_verdicts",
    "summarize_arm",
    "verdict_at_look",
    "verdict_codes",
]

Verdict = Literal["gone", "persists", "inconclusive"]

#: verdict codes of :func:`verdict_codes`
INCONCLUSIVE, GONE, PERSISTS = 0, 1, 2
_NAMES: dict[int, Verdict] = {INCONCLUSIVE: "inconclusive", GONE: "gone", PERSISTS: "persists"}

#: bootstrap settings: fixed seed so a saved trial always prints the same CIs
CI_LEVEL = 0.95
_RESAMPLES = 2000
_EXACT_MAX = 50  # per arm; above it the normal approximation is exact enough


@dataclass(frozen=True)
class Look:
    """A planned look: judge when each arm has ``n`` windows, at level ``alpha``."""

    n: int
    alpha: float


@functools.lru_cache(maxsize=256)
def exact_levels(n: int, budget: float) -> float:
    """The largest one-sided exact U p-value at ``n`` vs ``n`` that is ≤ ``budget``.

    0.0 when even the most extreme outcome (perfect separation) is not
    significant at ``budget``.  The values come from scipy's exact null
    distribution, evaluated on constructed samples with U = 0, 1, 2, ...
    """
    best = 0.0
    for u in range(n * n + 1):
        p = float(_exact_p_for_u(n, u))
        if p > budget:
            break
        best = p
    return best


def _exact_p_for_u(n: int, u: int) -> float:
    """One-sided exact p-value of U = ``u`` (pairs where cut > baseline) at ``n`` vs ``n``."""
    baseline = 2.0 * np.arange(n)
    above = []  # how many baseline values each cut value exceeds
    left = u
    for _ in range(n):
        take = min(n, left)
        above.append(take)
        left -= take
    cut = np.array([2.0 * c - 1.0 + 1e-3 * j for j, c in enumerate(sorted(above))])
    return float(_sps().mannwhitneyu(cut, baseline, alternative="less", method="exact").pvalue)


def plan_looks(
    alpha: float, max_per_arm: int, block: int = 2, rho: float = 3.0
) -> tuple[Look, ...]:
    """The looks of a sequential trial and the level each spends (see the module docstring).

    Looks at ``block, 2*block, ..., max_per_arm`` windows per arm; looks where
    no outcome could be significant are left out.  The levels sum to at most
    ``alpha``.
    """
    sizes = list(range(block, max_per_arm + 1, block))
    if not sizes or sizes[-1] != max_per_arm:
        sizes.append(max_per_arm)
    looks: list[Look] = []
    spent = 0.0
    for n in sizes:
        budget = alpha if n == sizes[-1] else alpha * (n / max_per_arm) ** rho
        level = exact_levels(n, budget - spent) if n <= _EXACT_MAX else budget - spent
        if level > 0:
            looks.append(Look(n, level))
            spent += level
    if not looks:
        need = next(n for n in range(2, 64) if exact_levels(n, alpha) > 0)
        raise BadInput(
            f"{max_per_arm} windows per arm can never reach p < {alpha}; "
            f"use --windows {need} or more, or a larger --alpha"
        )
    return tuple(looks)


@dataclass(frozen=True)
class Design:
    """What a trial is judged against: levels, the smallest effect that matters, the budget."""

    alpha: float = 0.01
    min_effect: float = 0.10
    max_per_arm: int = 10
    higher_is_better: bool = False
    block: int = 2
    rho: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise BadInput(f"--alpha {self.alpha} is out of range; use e.g. 0.01 or 0.05")
        if not 0 < self.min_effect < 1:
            raise BadInput(f"--min-effect {self.min_effect:.0%} is out of range; use e.g. 10%")
        if self.max_per_arm < 2:
            raise BadInput(f"--windows {self.max_per_arm} is too few; use at least 6")

    @cached_property
    def looks(self) -> tuple[Look, ...]:
        """The planned looks (see :func:`plan_looks`)."""
        return plan_looks(self.alpha, self.max_per_arm, self.block, self.rho)

    def look_at(self, n: int) -> Look | None:
        """The planned look at ``n`` windows per arm, if there is one."""
        return next((look for look in self.looks if look.n == n), None)


@dataclass(frozen=True)
class Tests:
    """The effect and the three one-sided p-values, for one trial or an array of them."""

    effect: NDArray[np.float64]  # median(cut) / median(baseline) - 1
    p_reduced: NDArray[np.float64]  # H1: the cut reduced the symptom
    p_within: NDArray[np.float64]  # H1: the reduction is smaller than min_effect
    p_not_worse: NDArray[np.float64]  # H1: the increase is smaller than min_effect

    def improvement(self, higher_is_better: bool) -> NDArray[np.float64]:
        """How much better the symptom got with the cut, as a fraction (negative: worse)."""
        return self.effect if higher_is_better else -self.effect


def _mwu(x: NDArray[np.float64], y: NDArray[np.float64], alternative: str) -> NDArray[np.float64]:
    """One-sided Mann--Whitney U p-values, x against y, along the last axis."""
    method = "exact" if max(x.shape[-1], y.shape[-1]) <= _EXACT_MAX else "asymptotic"
    res = _sps().mannwhitneyu(x, y, alternative=alternative, method=method, axis=-1)
    return np.asarray(res.pvalue, dtype=np.float64)


def run_tests(baseline: ArrayLike, cut: ArrayLike, design: Design) -> Tests:
    """The effect and p-values of ``cut`` against ``baseline`` (samples along the last axis)."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(cut, dtype=np.float64)
    if a.shape[-1] < 1 or b.shape[-1] < 1:
        raise BadInput("a verdict needs at least one window in each arm; let the trial run longer")
    delta = design.min_effect
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.median(b, axis=-1) / np.median(a, axis=-1) - 1.0
    if design.higher_is_better:
        p_reduced = _mwu(b, a, "greater")
        p_within = _mwu(b, (1 + delta) * a, "less")
        p_not_worse = _mwu(b, (1 - delta) * a, "greater")
    else:
        p_reduced = _mwu(b, a, "less")
        p_within = _mwu(b, (1 - delta) * a, "greater")
        p_not_worse = _mwu(b, (1 + delta) * a, "less")
    return Tests(np.asarray(effect, dtype=np.float64), p_reduced, p_within, p_not_worse)


def verdict_codes(tests: Tests, design: Design, level: float) -> NDArray[np.int8]:
    """Verdict codes (0 inconclusive, 1 gone, 2 persists) at a look of level ``level``."""
    improvement = tests.improvement(design.higher_is_better)
    gone = (tests.p_reduced <= level) & (np.nan_to_num(improvement, nan=0.0) >= design.min_effect)
    persists = ~gone & (tests.p_within <= level)
    codes = np.where(gone, GONE, np.where(persists, PERSISTS, INCONCLUSIVE))
    return codes.astype(np.int8)


def sequential_verdicts(
    baseline: ArrayLike, cut: ArrayLike, design: Design
) -> tuple[NDArray[np.int8], NDArray[np.int64]]:
    """Run the planned looks over many trials at once.

    ``baseline`` and ``cut`` have shape ``(trials, max_per_arm)``, in window
    order.  Returns each trial's verdict code and the windows per arm it
    used (``max_per_arm`` when it never decided) -- exactly what a trial that
    stops at its first decided look would report.
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(cut, dtype=np.float64)
    codes = np.zeros(a.shape[:-1], dtype=np.int8)
    used = np.full(a.shape[:-1], design.max_per_arm, dtype=np.int64)
    open_ = np.ones(a.shape[:-1], dtype=bool)
    for look in design.looks:
        tests = run_tests(a[..., : look.n], b[..., : look.n], design)
        now = verdict_codes(tests, design, look.alpha)
        hit = open_ & (now != INCONCLUSIVE)
        codes[hit] = now[hit]
        used[hit] = look.n
        open_ &= ~hit
    return codes, used


@dataclass(frozen=True)
class ArmSummary:
    """One arm's windows: median, bootstrap CI of the median, the raw samples."""

    median: float
    ci: tuple[float, float] | None
    samples: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "median": self.median,
            "ci": list(self.ci) if self.ci else None,
            "samples": list(self.samples),
        }


def bootstrap_ci(
    samples: Sequence[Sequence[float]], statistic: Any, level: float = CI_LEVEL
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of a vectorized ``statistic``; None if too few data."""
    if any(len(s) < 2 for s in samples):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate data: scipy warns, the CI is then a point
        res = _sps().bootstrap(
            tuple(np.asarray(s, dtype=np.float64) for s in samples),
            statistic,
            n_resamples=_RESAMPLES,
            confidence_level=level,
            method="percentile",
            vectorized=True,
            paired=False,
            rng=np.random.default_rng(0),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        return None
    return (low, high)


def summarize_arm(samples: Sequence[float]) -> ArmSummary:
    """Median and bootstrap CI of one arm's window values."""
    values = tuple(float(v) for v in samples)
    median = float(np.median(values)) if values else math.nan
    return ArmSummary(median, bootstrap_ci([values], np.median), values)


def _effect_statistic(a: NDArray[np.float64], b: NDArray[np.float64], axis: int) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(b, axis=axis) / np.median(a, axis=axis) - 1.0


@dataclass(frozen=True)
class Judgement:
    """The verdict of a trial so far, with everything needed to believe it."""

    verdict: Verdict
    reason: str  # one line, for people
    look: Look | None  # the look this judgement was made at (None: not at a planned look)
    effect: float
    effect_ci: tuple[float, float] | None
    p_value: float  # of the test that decided; p_reduced when inconclusive
    p_reduced: float
    p_within: float
    p_not_worse: float
    baseline: ArmSummary
    cut: ArmSummary
    design: Design

    @property
    def p_equivalence(self) -> float:
        """TOST p-value: both one-sided tests within ±min_effect."""
        return max(self.p_within, self.p_not_worse)

    @property
    def worse(self) -> bool:
        """The estimate says the cut made the symptom worse by at least min_effect."""
        sign = 1.0 if self.design.higher_is_better else -1.0
        return sign * self.effect <= -self.design.min_effect

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "p_value": self.p_value,
            "effect": self.effect,
            "effect_ci": list(self.effect_ci) if self.effect_ci else None,
            "p_reduced": self.p_reduced,
            "p_within": self.p_within,
            "p_not_worse": self.p_not_worse,
            "p_equivalence": self.p_equivalence,
            "look": {"n": self.look.n, "alpha": self.look.alpha} if self.look else None,
            "baseline": self.baseline.as_dict(),
            "cut": self.cut.as_dict(),
            "alpha": self.design.alpha,
            "min_effect": self.design.min_effect,
            "higher_is_better": self.design.higher_is_better,
            "planned_looks": [{"n": lk.n, "alpha": lk.alpha} for lk in self.design.looks],
            "ci_level": CI_LEVEL,
        }


def verdict_at_look(
    baseline: Sequence[float], cut: Sequence[float], design: Design
) -> tuple[Look, Verdict] | None:
    """The verdict if the arms are at a planned look, else None; cheap (no bootstrap)."""
    look = design.look_at(len(baseline)) if len(baseline) == len(cut) else None
    if look is None:
        return None
    code = int(verdict_codes(run_tests(baseline, cut, design), design, look.alpha))
    return look, _NAMES[code]


def judge(baseline: Sequence[float], cut: Sequence[float], design: Design) -> Judgement:
    """Judge the windows measured so far.

    A verdict other than ``inconclusive`` is only given at a planned look
    (both arms have exactly ``look.n`` windows); anywhere else the numbers
    are reported but the verdict stays ``inconclusive``.
    """
    n = min(len(baseline), len(cut))
    look = design.look_at(n) if len(baseline) == len(cut) else None
    base_s, cut_s = summarize_arm(baseline), summarize_arm(cut)
    if n == 0:
        return Judgement(
            "inconclusive",
            "no complete window in each arm",
            None,
            math.nan,
            None,
            1.0,
            1.0,
            1.0,
            1.0,
            base_s,
            cut_s,
            design,
        )
    tests = run_tests(baseline, cut, design)
    level = look.alpha if look else 0.0
    code = int(verdict_codes(tests, design, level))
    verdict = _NAMES[code]
    p_red, p_in, p_nw = float(tests.p_reduced), float(tests.p_within), float(tests.p_not_worse)
    effect = float(tests.effect)
    p_value = {GONE: p_red, PERSISTS: p_in}.get(code, p_red)
    effect_ci = bootstrap_ci([baseline, cut], _effect_statistic)
    reason = _reason(verdict, effect, p_value, level, n, look, design)
    return Judgement(
        verdict, reason, look, effect, effect_ci, p_value, p_red, p_in, p_nw, base_s, cut_s, design
    )


def _reason(
    verdict: Verdict,
    effect: float,
    p: float,
    level: float,
    n: int,
    look: Look | None,
    design: Design,
) -> str:
    delta = f"{design.min_effect:.0%}"
    if verdict == "gone":
        return f"symptom {effect:+.0%} (p={p:.2g} ≤ {level:.2g} at {n} windows/arm)"
    if verdict == "persists":
        return f"symptom {effect:+.0%}, a change of {delta} or more ruled out (p={p:.2g})"
    if look is None:
        return f"symptom {effect:+.0%} so far; not at a planned look ({n} windows/arm)"
    if n < design.max_per_arm:
        return f"symptom {effect:+.0%} so far; undecided at {n} windows/arm"
    return (
        f"symptom {effect:+.0%}: neither a reduction of {delta} nor its absence shown in "
        f"{n} windows/arm; run more --windows, longer --window, or a larger --min-effect"
    )
