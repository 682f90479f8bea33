"""The verdict of a trial: did the symptom go away when the code was cut?

**The verdicts.**  ``gone``: the cut brings the symptom back to healthy -- at
least ``--gone-at`` (default 80%) of its excess over healthy is removed, shown
at the trial's level (``--alpha``, 1%).  ``reduced``: a real reduction of at
least ``--min-effect`` (default 10%), but part of the symptom remains (the cut
is part of the cause, or a partial fix).  ``persists``: a change as large as
``--min-effect`` is ruled out (at 5%): this code is not the cause; a cut that
made the symptom clearly worse also persists and says so.  ``inconclusive``:
neither was shown within ``--windows``; run more windows, longer windows, or a
larger ``--min-effect``.  ``breaks``: the cut stopped the work (the target
crashed, the kernel warned, the work rate fell); it is never a fix.

**The explained share** is the fraction of the symptom's excess over healthy
that the cut removes: (baseline - cut) / (baseline - healthy), from the arms'
medians, with a 95% bootstrap CI.  Give the healthy level with ``--healthy``
(e.g. ``--healthy 13%`` for the sys CPU of a machine without the problem);
without it healthy is the symptom's zero, so the share is simply the relative
reduction.  A throughput (``--higher-is-better``) is judged as time per unit
of work: without ``--healthy`` the share is 1 - baseline/cut (doubling the
rate explains 50%).  Example: sys 54% -> 29% with ``--healthy 13%`` explains
61%: ``reduced``, not ``gone``.

What is tested, with ``b`` the baseline arm, ``c`` the cut arm, ``h`` the
healthy level, ``g = gone_at`` and ``d = min_effect`` (lower is better; a
throughput is turned into time per unit, 1/x, for the share and the gone
tests, and its ``d`` is the relative rise of the throughput):

* *a reduction*: one-sided exact Mann--Whitney U, ``c < b`` (``p_reduced``),
  and the estimated reduction (ratio of medians) is at least ``d``;
* ``gone``: a reduction, an estimated share of at least ``g``, and the cut
  arm below the baseline moved to the gone level ``L = h + (1 - g)(b - h)``
  (``p_gone``), shown two ways whose larger p-value counts: against each
  baseline window's excess cut to ``1 - g`` (``h + (1 - g)(b_i - h)``, exact
  when h = 0 and the noise scales with the level) and against the baseline
  windows scaled to ``L`` (``b_i L / median(b)``, which keeps their relative
  spread: right when h > 0, where the first way makes the baseline look
  quieter than the cut arm).  Simulated (tests/unit/test_stats.py), a cut
  whose true share is exactly ``g`` is called ``gone`` in at most ~1% of
  trials at alpha 1% when the noise scales with the level, and ~2.5% under
  constant (additive) noise; at a true share of 75%, under 0.1%;
* ``reduced``: a reduction, not gone, and either ``c > h + (1 - g)(b_i - h)``
  shown (``p_not_gone``) or the last look reached: ``reduced`` is never
  given early while more windows could still show ``gone``;
* ``persists``: no reduction shown, and ``c > (1 - d) b`` (``p_within``, the
  lower of the two one-sided tests of a TOST equivalence test; the other
  side, ``p_not_worse``, is reported);
* a baseline at or below healthy has no excess: its share is undefined.  A
  baseline within ``d`` of healthy has too little excess to judge: a cut
  would have to overshoot healthy to change the symptom by ``d``.  Either
  way the verdict is ``persists`` or ``inconclusive``, by ``p_within`` alone.

**Two error rates.**  A false ``gone``/``reduced`` names a wrong culprit: a
search stops there and a user fixes the wrong code, so those tests run at
``alpha`` = 1%.  A false ``persists`` costs a missed frame that the search can
revisit (a real cause also shows in the frames around it), so the absence
tests run at ``alpha_persists`` = 5%, which lets a true null reach
``persists`` within 20 windows per arm: at CV 10% and ``--min-effect 10%``
about 92% of null cuts do (in 13 windows per arm on average), while a -20%
effect is found (gone/reduced) in > 99%, mostly by 8 windows per arm; at CV
2% (the seed's symptom) both take 6.  ``bench/time_to_verdict.py`` has the
figures per effect and noise.

**Why not Pinpoint's rule.**  Chromium's bisect (Pinpoint) takes p = min(KS,
Mann--Whitney), calls "different" below 0.01 and "same" above a threshold that
falls with the sample size and with the size of the change looked for, and
adds samples in growing batches up to a cap.  Its "same" threshold is the 99th
percentile of p under a shift of the given size in units of the noise's
spread, for normal noise, one look at a time: so how often "same" is wrong
depends on the real noise and on how many looks were taken, and the minimum
of two tests over repeated looks makes "different" err above 0.01.  On the
same synthetic trials with the same cap (``bench/time_to_verdict.py``, the
noise's spread given to it exactly), at CV 10% it says "same" for a cut of
exactly ``--min-effect`` in 25% of trials (here: 4%), finds "same" for a
true null in 75% (here: 92%), and at CV 20% a false "different" in 1.7% (here:
under 1%).  The design here keeps its ideas -- a second test whose success
means "same", decisions as the data grow, a cap -- but makes "same" a test
of its own (``p_within``, against the baseline moved by the effect that
matters, in the symptom's own units), and spends each test's alpha over the
looks by a group-sequential boundary (:mod:`knockout.stats_looks`): the
reduction tests' error holds whatever the noise's shape, the absence test's
whenever the noise scales with the level.  The Kolmogorov--Smirnov test is
left out: it reacts to changes of spread, which a cut that moves the median
does not need, and it costs power.

**Noise.**  The rank tests assume only that windows within an arm are
exchangeable; outlier windows (a busy 2-core host) cost power, never the error
bound.  Windows are interleaved ABBA so slow drift cancels, and a verdict is
given only at a planned look (equal windows per arm).  The functions on
arrays take samples along the last axis, so thousands of synthetic trials are
judged by the same code that judges a real one (``tests/unit/test_stats*.py``).

>>> d = Design(healthy=13.0, unit="%", max_per_arm=6)
>>> j = judge([54, 55, 53, 54, 56, 52], [29, 30, 28, 29, 31, 27], d)
>>> j.verdict, round(j.explained, 2)
('reduced', 0.61)
>>> j.reason.split(":")[0]
'symptom -46%, 61% of the excess over healthy 13% (CI 59% to 63%)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from knockout.errors import BadInput
from knockout.stats_looks import Look, exact_levels, plan_looks
from knockout.stats_ranks import Alternative, mwu_p

__all__ = [
    "CI_LEVEL",
    "DEFAULT_WINDOWS",
    "GONE",
    "INCONCLUSIVE",
    "PERSISTS",
    "REDUCED",
    "ArmSummary",
    "Design",
    "Judgement",
    "Look",
    "Tests",
    "Verdict",
    "bootstrap_medians",
    "exact_levels",
    "explained_ci",
    "judge",
    "plan_looks",
    "run_tests",
    "sequential_verdicts",
    "summarize_arm",
    "verdict_at_look",
    "verdict_codes",
]

Verdict = Literal["gone", "reduced", "persists", "inconclusive", "breaks"]

#: verdict codes of :func:`verdict_codes` (``breaks`` is the trial's, never a code)
INCONCLUSIVE, GONE, PERSISTS, REDUCED = 0, 1, 2, 3
_NAMES: dict[int, Verdict] = {
    INCONCLUSIVE: "inconclusive",
    GONE: "gone",
    PERSISTS: "persists",
    REDUCED: "reduced",
}

#: windows per arm at most, by default (the trial's ``--windows``)
DEFAULT_WINDOWS = 20

#: bootstrap settings: fixed seed so a saved trial always prints the same CIs
CI_LEVEL = 0.95
_RESAMPLES = 2000


@dataclass(frozen=True)
class Design:
    """What a trial is judged against: levels, the effect that matters, healthy, the budget.

    ``healthy`` is in the symptom's unit (a throughput for ``higher_is_better``);
    None means the symptom's zero (zero time per unit of work for a throughput).
    ``unit`` only formats the reason.

    >>> Design(healthy=200.0, higher_is_better=True).healthy_cost  # seconds per unit
    0.005
    >>> [look.n for look in Design().looks][:4], Design().look_at(7)
    ([6, 8, 10, 12], None)
    """

    alpha: float = 0.01
    min_effect: float = 0.10
    max_per_arm: int = DEFAULT_WINDOWS
    higher_is_better: bool = False
    healthy: float | None = None
    gone_at: float = 0.8
    alpha_persists: float = 0.05
    block: int = 2
    rho: float = 1.5
    rho_persists: float = 2.0
    unit: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise BadInput(f"--alpha {self.alpha} is out of range; use e.g. 0.01 or 0.05")
        if not 0 < self.alpha_persists < 0.5:
            raise BadInput(f"alpha_persists {self.alpha_persists} is out of range; use e.g. 0.05")
        if not 0 < self.min_effect < 1:
            raise BadInput(f"--min-effect {self.min_effect:.0%} is out of range; use e.g. 10%")
        if not 0 < self.gone_at <= 1:
            raise BadInput(
                f"--gone-at {self.gone_at:.0%} is out of range; use e.g. 80% (at most 100%)"
            )
        if self.max_per_arm < 2 or self.block < 1:
            raise BadInput(f"--windows {self.max_per_arm} is too few; use at least 6")
        self._check_healthy()

    def _check_healthy(self) -> None:
        h = self.healthy
        if h is None:
            return
        if not math.isfinite(h) or h < 0:
            raise BadInput(f"--healthy {h} must be a level the symptom can have (0 or more)")
        if self.higher_is_better and h == 0:
            raise BadInput(
                "--healthy 0 is no work at all for a --higher-is-better symptom; give the "
                "rate of a healthy run, or omit --healthy to measure against zero time per unit"
            )

    @cached_property
    def looks(self) -> tuple[Look, ...]:
        """The planned looks (see :mod:`knockout.stats_looks`)."""
        return plan_looks(
            self.alpha,
            self.max_per_arm,
            self.block,
            self.rho,
            self.alpha_persists,
            self.rho_persists,
        )

    def look_at(self, n: int) -> Look | None:
        """The planned look at ``n`` windows per arm, if there is one."""
        return next((look for look in self.looks if look.n == n), None)

    @property
    def healthy_source(self) -> str:
        """``--healthy`` when given, else ``zero``."""
        return "zero" if self.healthy is None else "--healthy"

    @property
    def healthy_cost(self) -> float:
        """Healthy in the judged domain: the symptom, or time per unit of work for a throughput."""
        if self.healthy is None:
            return 0.0
        return 1.0 / self.healthy if self.higher_is_better else self.healthy


def _cost(x: NDArray[np.float64], higher_is_better: bool) -> NDArray[np.float64]:
    """The symptom as a cost (lower is better): time per unit of work for a throughput."""
    if not higher_is_better:
        return x
    with np.errstate(divide="ignore"):
        return np.asarray(1.0 / x)


def _explained(
    base_median: NDArray[np.float64], cut_median: NDArray[np.float64], design: Design
) -> NDArray[np.float64]:
    """The explained share from the arms' medians (NaN where the baseline has no excess)."""
    b = _cost(np.asarray(base_median, dtype=np.float64), design.higher_is_better)
    c = _cost(np.asarray(cut_median, dtype=np.float64), design.higher_is_better)
    h = design.healthy_cost
    excess = np.isfinite(b) & (b > h)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (b - c) / np.where(excess, b - h, 1.0)
    return np.asarray(np.where(excess, share, np.nan), dtype=np.float64)


def _room(base_median: NDArray[np.float64], design: Design) -> NDArray[np.float64]:
    """The improvement it would take to reach healthy, as a fraction of the symptom.

    Lower is better: (b - h) / b; a throughput: h / b - 1 (infinite without --healthy).
    """
    b = np.asarray(base_median, dtype=np.float64)
    h = design.healthy
    with np.errstate(divide="ignore", invalid="ignore"):
        if design.higher_is_better:
            room = np.full(b.shape, np.inf) if h is None else h / b - 1.0
        else:
            room = (b - (h or 0.0)) / b
    return np.asarray(np.nan_to_num(room, nan=0.0), dtype=np.float64)


@dataclass(frozen=True)
class Tests:
    """The estimates and the one-sided p-values, for one trial or an array of them."""

    __test__ = False  # not a pytest class

    effect: NDArray[np.float64]  # median(cut) / median(baseline) - 1
    explained: NDArray[np.float64]  # share of the excess removed; NaN: no excess
    room: NDArray[np.float64]  # the improvement it would take to reach healthy (_room)
    p_reduced: NDArray[np.float64]  # H1: the cut reduced the symptom
    p_gone: NDArray[np.float64]  # H1: the cut arm is below the gone level
    p_not_gone: NDArray[np.float64]  # H1: the cut arm is above the gone level
    p_within: NDArray[np.float64]  # H1: the reduction is smaller than min_effect
    p_not_worse: NDArray[np.float64]  # H1: the increase is smaller than min_effect

    def improvement(self, higher_is_better: bool) -> NDArray[np.float64]:
        """How much better the symptom got with the cut, as a fraction (negative: worse)."""
        return self.effect if higher_is_better else -self.effect


def _checked(values: ArrayLike, arm: str) -> NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64)
    if x.shape[-1] < 1:
        raise BadInput("a verdict needs at least one window in each arm; let the trial run longer")
    if not np.all(np.isfinite(x)):
        raise BadInput(
            f"a {arm} window has no value (NaN or infinite); drop or re-measure failed "
            "windows before judging"
        )
    if np.any(x < 0):
        raise BadInput(f"a {arm} window is negative; a symptom is a level, a time or a rate (>= 0)")
    return x


def run_tests(baseline: ArrayLike, cut: ArrayLike, design: Design) -> Tests:
    """The estimates and p-values of ``cut`` against ``baseline`` (samples along the last axis)."""
    a, b = _checked(baseline, "baseline"), _checked(cut, "cut")
    d, hib = design.min_effect, design.higher_is_better
    med_a, med_b = np.median(a, axis=-1), np.median(b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.asarray(med_b / med_a - 1.0, dtype=np.float64)
    better: Alternative = "greater" if hib else "less"
    worse: Alternative = "less" if hib else "greater"
    p_reduced = mwu_p(b, a, better)
    p_within = mwu_p(b, (1 + d if hib else 1 - d) * a, worse)
    p_not_worse = mwu_p(b, (1 - d if hib else 1 + d) * a, better)
    moved, scaled = _gone_levels(_cost(a, hib), design)
    cost_b = _cost(b, hib)
    return Tests(
        effect,
        _explained(med_a, med_b, design),
        _room(med_a, design),
        p_reduced,
        np.maximum(mwu_p(cost_b, moved, "less"), mwu_p(cost_b, scaled, "less")),
        mwu_p(cost_b, moved, "greater"),
        p_within,
        p_not_worse,
    )


def _gone_levels(
    base_cost: NDArray[np.float64], design: Design
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The baseline windows moved to the gone level, two ways (see the module docstring).

    ``moved``: h + (1 - g)(b_i - h), each window's excess cut to 1 - g;
    ``scaled``: b_i * L / median(b), L = h + (1 - g)(median(b) - h): the same
    level, keeping the baseline's relative spread.
    """
    h, g = design.healthy_cost, design.gone_at
    moved = h + (1 - g) * (base_cost - h)
    median = np.median(base_cost, axis=-1, keepdims=True)
    ok = np.isfinite(median) & (median > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(ok, (h + (1 - g) * (median - h)) / np.where(ok, median, 1.0), 1 - g)
    return moved, base_cost * factor


def verdict_codes(tests: Tests, design: Design, look: Look) -> NDArray[np.int8]:
    """Verdict codes (:data:`INCONCLUSIVE`, :data:`GONE`, ...) at ``look`` (module docstring)."""
    improvement = np.nan_to_num(tests.improvement(design.higher_is_better), nan=0.0)
    excess = ~np.isnan(tests.explained) & (tests.room >= design.min_effect)
    explained = np.where(excess, tests.explained, -np.inf)
    shown = excess & (tests.p_reduced <= look.alpha) & (improvement >= design.min_effect)
    gone = shown & (tests.p_gone <= look.alpha) & (explained >= design.gone_at)
    not_gone = (tests.p_not_gone <= look.alpha_persists) | look.final
    reduced = shown & ~gone & not_gone
    persists = ~shown & (tests.p_within <= look.alpha_persists)
    codes = np.select([gone, reduced, persists], [GONE, REDUCED, PERSISTS], INCONCLUSIVE)
    return np.asarray(codes, dtype=np.int8)


def sequential_verdicts(
    baseline: ArrayLike, cut: ArrayLike, design: Design
) -> tuple[NDArray[np.int8], NDArray[np.int64]]:
    """Run the planned looks over many trials at once.

    ``baseline`` and ``cut`` have shape ``(trials, max_per_arm)``, in window
    order.  Returns each trial's verdict code and the windows per arm it
    used (``max_per_arm`` when it never decided) -- exactly what a trial that
    stops at its first decided look would report.
    """
    a = _checked(baseline, "baseline")
    b = _checked(cut, "cut")
    codes = np.zeros(a.shape[:-1], dtype=np.int8)
    used = np.full(a.shape[:-1], design.max_per_arm, dtype=np.int64)
    open_ = np.ones(a.shape[:-1], dtype=bool)
    for look in design.looks:
        now = verdict_codes(run_tests(a[..., : look.n], b[..., : look.n], design), design, look)
        hit = open_ & (now != INCONCLUSIVE)
        codes[hit] = now[hit]
        used[hit] = look.n
        open_ &= ~hit
    return codes, used


# -- confidence intervals ----------------------------------------------------------------------


def bootstrap_medians(
    samples: ArrayLike, resamples: int = _RESAMPLES, rng: np.random.Generator | None = None
) -> NDArray[np.float64]:
    """Medians of ``resamples`` bootstrap resamples of each row: shape ``(..., resamples)``.

    >>> bootstrap_medians([1.0, 1.0, 1.0], 4).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    x = np.asarray(samples, dtype=np.float64)
    gen = np.random.default_rng(0) if rng is None else rng
    n = x.shape[-1]
    flat = x.reshape(-1, n)
    out = np.empty((flat.shape[0], resamples))
    for i, row in enumerate(flat):  # one row at a time keeps memory at resamples x n
        out[i] = np.median(row[gen.integers(0, n, (resamples, n))], axis=-1)
    return out.reshape(*x.shape[:-1], resamples)


def _percentile_ci(draws: NDArray[np.float64], level: float = CI_LEVEL) -> NDArray[np.float64]:
    """Percentile interval of the last axis, by order statistics (so infinities stay exact)."""
    s = np.sort(draws, axis=-1)
    r = s.shape[-1]
    low = s[..., math.floor((1 - level) / 2 * (r - 1))]
    high = s[..., math.ceil((1 + level) / 2 * (r - 1))]
    return np.stack([low, high], axis=-1)


def explained_ci(
    base_draws: NDArray[np.float64], cut_draws: NDArray[np.float64], design: Design
) -> NDArray[np.float64]:
    """CI of the explained share from bootstrap medians: ``(..., 2)``, NaN where undefined.

    Undefined when more than the CI's tail share of the resamples has no
    excess over healthy: the data then cannot bound the share.
    """
    shares = _explained(base_draws, cut_draws, design)
    undefined = np.mean(np.isnan(shares), axis=-1) > (1 - CI_LEVEL) / 2
    ci = _percentile_ci(np.where(np.isnan(shares), -np.inf, shares))
    return np.where(undefined[..., None], np.nan, ci)


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


def _pair(ci: NDArray[np.float64]) -> tuple[float, float] | None:
    low, high = float(ci[0]), float(ci[1])
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def summarize_arm(samples: Sequence[float]) -> ArmSummary:
    """Median and bootstrap CI of one arm's window values."""
    values = tuple(float(v) for v in samples)
    if not values:
        return ArmSummary(math.nan, None, values)
    ci = _pair(_percentile_ci(bootstrap_medians(values))) if len(values) >= 2 else None
    return ArmSummary(float(np.median(values)), ci, values)


# -- the judgement of one trial --------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """The verdict of a trial so far, with everything needed to believe it."""

    verdict: Verdict
    reason: str  # one line, for people
    look: Look | None  # the look this judgement was made at (None: not at a planned look)
    effect: float
    effect_ci: tuple[float, float] | None
    p_value: float  # of the test(s) that decided; p_reduced when inconclusive
    p_reduced: float
    p_within: float
    p_not_worse: float
    baseline: ArmSummary
    cut: ArmSummary
    design: Design
    explained: float = math.nan  # NaN: no excess over healthy
    explained_ci: tuple[float, float] | None = None
    p_gone: float = 1.0
    p_not_gone: float = 1.0

    @property
    def healthy(self) -> float | None:
        """Healthy in the symptom's unit; None for a throughput judged against zero time."""
        h = self.design.healthy
        if h is None:
            return None if self.design.higher_is_better else 0.0
        return h

    @property
    def healthy_source(self) -> str:
        """``--healthy`` or ``zero``."""
        return self.design.healthy_source

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
        """JSON-ready form (undefined numbers are null)."""
        d = self.design
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "p_value": self.p_value,
            "effect": _json_number(self.effect),
            "effect_ci": _json_pair(self.effect_ci),
            "explained": _json_number(self.explained),
            "explained_ci": _json_pair(self.explained_ci),
            "healthy": self.healthy,
            "healthy_source": self.healthy_source,
            "gone_at": d.gone_at,
            "p_reduced": self.p_reduced,
            "p_gone": self.p_gone,
            "p_not_gone": self.p_not_gone,
            "p_within": self.p_within,
            "p_not_worse": self.p_not_worse,
            "p_equivalence": self.p_equivalence,
            "worse": self.worse,
            "look": self.look.as_dict() if self.look else None,
            "baseline": self.baseline.as_dict(),
            "cut": self.cut.as_dict(),
            "alpha": d.alpha,
            "alpha_persists": d.alpha_persists,
            "min_effect": d.min_effect,
            "higher_is_better": d.higher_is_better,
            "planned_looks": [lk.as_dict() for lk in d.looks],
            "ci_level": CI_LEVEL,
        }


def _json_number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json_pair(ci: tuple[float, float] | None) -> list[float] | None:
    return list(ci) if ci and all(math.isfinite(x) for x in ci) else None


def verdict_at_look(
    baseline: Sequence[float], cut: Sequence[float], design: Design
) -> tuple[Look, Verdict] | None:
    """The verdict if the arms are at a planned look, else None; cheap (no bootstrap).

    >>> base = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0]
    >>> verdict_at_look(base, [v * 0.05 for v in base], Design())[1]
    'gone'
    >>> verdict_at_look(base[:5], base[:5], Design()) is None  # 5 is not a look
    True
    """
    look = design.look_at(len(baseline)) if len(baseline) == len(cut) else None
    if look is None:
        return None
    code = int(verdict_codes(run_tests(baseline, cut, design), design, look))
    return look, _NAMES[code]


def judge(baseline: Sequence[float], cut: Sequence[float], design: Design) -> Judgement:
    """Judge the windows measured so far.

    A verdict other than ``inconclusive`` is only given at a planned look
    (both arms have exactly ``look.n`` windows); anywhere else the numbers
    are reported but the verdict stays ``inconclusive``.
    """
    n = min(len(baseline), len(cut))
    look = design.look_at(n) if len(baseline) == len(cut) else None
    if n == 0:
        base_s, cut_s = summarize_arm(baseline), summarize_arm(cut)
        nothing = (math.nan, None, 1.0, 1.0, 1.0, 1.0, base_s, cut_s, design)
        return Judgement("inconclusive", "no complete window in each arm", None, *nothing)
    tests = run_tests(baseline, cut, design)
    code = int(verdict_codes(tests, design, look)) if look else INCONCLUSIVE
    base_draws, cut_draws = bootstrap_medians(baseline), bootstrap_medians(cut)
    effect_ci = share_ci = None
    if n >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            effect_ci = _pair(_percentile_ci(cut_draws / base_draws - 1.0))
        share_ci = _pair(explained_ci(base_draws, cut_draws, design))
    j = Judgement(
        _NAMES[code],
        "",
        look,
        float(tests.effect),
        effect_ci,
        _deciding_p(code, tests),
        float(tests.p_reduced),
        float(tests.p_within),
        float(tests.p_not_worse),
        _summary(baseline, base_draws),
        _summary(cut, cut_draws),
        design,
        float(tests.explained),
        share_ci,
        float(tests.p_gone),
        float(tests.p_not_gone),
    )
    return replace(j, reason=_reason(j, n))


def _summary(samples: Sequence[float], draws: NDArray[np.float64]) -> ArmSummary:
    values = tuple(float(v) for v in samples)
    ci = _pair(_percentile_ci(draws)) if len(values) >= 2 else None
    return ArmSummary(float(np.median(values)), ci, values)


def _deciding_p(code: int, t: Tests) -> float:
    if code == GONE:
        return float(max(t.p_reduced, t.p_gone))
    if code == PERSISTS:
        return float(t.p_within)
    return float(t.p_reduced)


# -- the reason line ----------------------------------------------------------------------


def _value(x: float, unit: str) -> str:
    """``13%``, ``0.52s``, ``950 req/s``."""
    return f"{x:.3g}{unit if unit in ('%', 's', '') else ' ' + unit}"


def _share(j: Judgement) -> str:
    """``61% of the excess over healthy 13% (CI 55% to 67%)``."""
    d = j.design
    what = "excess time per unit of work" if d.higher_is_better else "excess"
    if d.healthy is not None:
        over = f"over healthy {_value(d.healthy, d.unit)}"
    elif d.higher_is_better:
        over = "over zero time (no --healthy)"
    else:
        over = "over zero (no --healthy)"
    if math.isnan(j.explained):
        return f"no {what} {over} to explain (the baseline is at or below it)"
    ci = f" (CI {j.explained_ci[0]:.0%} to {j.explained_ci[1]:.0%})" if j.explained_ci else ""
    return f"{j.explained:.0%} of the {what} {over}{ci}"


def _reason(j: Judgement, n: int) -> str:
    d, look = j.design, j.look
    head = f"symptom {j.effect:+.0%}"
    if math.isnan(j.explained) or j.explained > 0:  # a negative share says no more than "worse"
        head += f", {_share(j)}"
    delta = f"{d.min_effect:.0%}"
    if j.verdict == "gone":
        return f"{head}: at least {d.gone_at:.0%} shown (p={j.p_value:.2g} at {n} windows/arm)"
    if j.verdict == "reduced":
        short = (
            f"below {d.gone_at:.0%} shown, p={j.p_not_gone:.2g}"
            if look and j.p_not_gone <= look.alpha_persists
            else f"{d.gone_at:.0%} not shown in {n} windows/arm"
        )
        return (
            f"{head}: a real reduction (p={j.p_reduced:.2g}), short of the {d.gone_at:.0%} "
            f"that gone needs ({short})"
        )
    if j.verdict == "persists":
        worse = "; the cut made it worse" if j.worse else ""
        return f"{head}: a reduction of {delta} or more ruled out (p={j.p_within:.2g}){worse}"
    close = float(_room(np.asarray(j.baseline.median), d)) < d.min_effect
    if not math.isnan(j.explained) and close:
        head += f"; but the baseline is within {delta} of healthy, too close to judge a cause"
    if look is None:
        return f"{head} so far; not at a planned look ({n} windows/arm)"
    if not look.final:
        return f"{head} so far; undecided at {n} windows/arm"
    advice = (
        "check --healthy"
        if math.isnan(j.explained) or close
        else "run more --windows, longer --window, or a larger --min-effect"
    )
    return (
        f"{head}: neither a reduction of {delta} nor its absence shown in {n} windows/arm; {advice}"
    )
