"""knockout.stats: the look schedule, the verdict rules, and their error rates by simulation.

Each simulation judges >= 2000 synthetic trials with the same vectorized
code a real trial uses (:func:`knockout.stats.sequential_verdicts`), from a
seeded RNG.  Window values are lognormal with the stated coefficient of
variation (CV); an effect of -20% means the cut arm's median is 0.8 times
the baseline's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from knockout.errors import BadInput
from knockout.stats import (
    GONE,
    INCONCLUSIVE,
    PERSISTS,
    Design,
    exact_levels,
    judge,
    plan_looks,
    sequential_verdicts,
)

TRIALS = 4000


def lognormal(
    rng: np.random.Generator, cv: float, n: int, effect: float = 0.0
) -> NDArray[np.float64]:
    """TRIALS x n window values with median 1 + effect and the given CV."""
    sigma = math.sqrt(math.log(1 + cv**2))
    return rng.lognormal(math.log(1 + effect), sigma, (TRIALS, n))


def upper(rate: float) -> float:
    """A rate plus 3 binomial standard errors at TRIALS: the sampling slack of a simulated rate."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / TRIALS)


def rates(codes: NDArray[np.int8]) -> dict[int, float]:
    return {k: float(np.mean(codes == k)) for k in (INCONCLUSIVE, GONE, PERSISTS)}


# -- the schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("windows", [6, 8, 10, 16, 30])
def test_looks_spend_at_most_alpha_at_attainable_levels(alpha: float, windows: int) -> None:
    looks = plan_looks(alpha, windows)
    assert sum(look.alpha for look in looks) <= alpha + 1e-12
    assert [look.n for look in looks] == sorted({look.n for look in looks})
    assert looks[-1].n == windows
    for look in looks:
        # the level is one the exact test can attain, so no budget is wasted on rounding
        assert exact_levels(look.n, look.alpha) == pytest.approx(look.alpha)


def test_smallest_exact_p_is_one_over_binomial() -> None:
    assert exact_levels(6, 0.01) >= 1 / math.comb(12, 6)
    assert exact_levels(6, 1 / math.comb(12, 6)) == pytest.approx(1 / math.comb(12, 6))
    assert exact_levels(4, 0.01) == 0.0  # 1/70 > 0.01: no outcome at 4 vs 4 is significant


def test_too_few_windows_says_how_many() -> None:
    with pytest.raises(BadInput, match="--windows 5 "):
        plan_looks(0.01, 4)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"alpha": 0.7}, "--alpha"),
        ({"min_effect": 1.5}, "--min-effect"),
        ({"max_per_arm": 1}, "--windows"),
    ],
)
def test_design_rejects_nonsense(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(BadInput, match=word):
        Design(**kwargs)  # type: ignore[arg-type]


# -- single judgements ------------------------------------------------------------------------


def test_judge_gone_when_clearly_reduced() -> None:
    j = judge(
        [1.0, 1.1, 0.9, 1.05, 0.95, 1.0], [0.5, 0.55, 0.45, 0.5, 0.52, 0.48], Design(max_per_arm=6)
    )
    assert j.verdict == "gone"
    assert j.effect == pytest.approx(-0.5)
    assert j.p_value == pytest.approx(1 / math.comb(12, 6))
    assert j.effect_ci is not None and j.effect_ci[0] < -0.4 < j.effect_ci[1] + 0.1
    assert j.baseline.ci is not None and j.baseline.ci[0] <= 1.0 <= j.baseline.ci[1]


def test_judge_persists_when_flat() -> None:
    base = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    j = judge(base, [v * 1.005 for v in reversed(base)], Design(max_per_arm=6))
    assert j.verdict == "persists"
    assert j.p_equivalence < 0.01 and not j.worse


def test_judge_a_worse_cut_persists_and_says_worse() -> None:
    base = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    j = judge(base, [v * 1.5 for v in base], Design(max_per_arm=6))
    assert j.verdict == "persists" and j.worse
    assert j.p_equivalence > 0.5  # not equivalent: clearly worse


def test_judge_small_reduction_is_not_gone() -> None:
    # significant, but only 5%: below --min-effect 10%
    base = [1.0, 1.001, 0.999, 1.0, 1.002, 0.998]
    j = judge(base, [v * 0.95 for v in base], Design(max_per_arm=6))
    assert j.p_reduced < 0.01
    assert j.verdict == "persists"


def test_judge_higher_is_better_reads_a_rise_as_gone() -> None:
    base = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0]
    up = judge(base, [v * 2 for v in base], Design(max_per_arm=6, higher_is_better=True))
    down = judge(base, [v / 2 for v in base], Design(max_per_arm=6, higher_is_better=True))
    assert up.verdict == "gone" and up.effect == pytest.approx(1.0)
    assert down.verdict == "persists" and down.worse


def test_no_verdict_off_the_planned_looks() -> None:
    j = judge([1.0] * 5, [0.1] * 5, Design(max_per_arm=10))  # 5 is not a look
    assert j.verdict == "inconclusive" and j.look is None
    partial = judge([1.0] * 6, [0.1] * 5, Design(max_per_arm=10))  # unequal: interrupted
    assert partial.verdict == "inconclusive"
    empty = judge([1.0], [], Design())
    assert empty.verdict == "inconclusive" and empty.cut.samples == ()


def test_ties_and_zeros_are_judged() -> None:
    j = judge([2.0, 2.0, 3.0, 2.0, 3.0, 2.0], [0.0] * 6, Design(max_per_arm=6))
    assert j.verdict == "gone" and j.effect == -1.0


def test_sequential_matches_step_by_step_judgement() -> None:
    rng = np.random.default_rng(7)
    design = Design(max_per_arm=10)
    a, b = rng.lognormal(0, 0.1, (40, 10)), rng.lognormal(-0.12, 0.1, (40, 10))
    codes, used = sequential_verdicts(a, b, design)
    names = {INCONCLUSIVE: "inconclusive", GONE: "gone", PERSISTS: "persists"}
    for i in range(40):
        for n in range(1, 11):
            j = judge(a[i, :n].tolist(), b[i, :n].tolist(), design)
            if j.verdict != "inconclusive" or n == 10:
                break
        assert (j.verdict, n) == (names[int(codes[i])], int(used[i]))


# -- error rates and power, by simulation --------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "alpha", "cv"), [(10, 0.01, 0.10), (8, 0.01, 0.05), (10, 0.05, 0.30)]
)
def test_false_gone_rate_under_no_effect_is_at_most_alpha(
    windows: int, alpha: float, cv: float
) -> None:
    rng = np.random.default_rng(11)
    design = Design(alpha=alpha, max_per_arm=windows)
    codes, _ = sequential_verdicts(lognormal(rng, cv, windows), lognormal(rng, cv, windows), design)
    assert rates(codes)[GONE] <= alpha


def test_false_gone_rate_without_min_effect_guard_is_still_at_most_alpha() -> None:
    """The p-value alone controls the error: with a tiny min-effect the rate stays <= alpha."""
    rng = np.random.default_rng(12)
    design = Design(alpha=0.05, max_per_arm=10, min_effect=0.001)
    codes, _ = sequential_verdicts(lognormal(rng, 0.1, 10), lognormal(rng, 0.1, 10), design)
    assert rates(codes)[GONE] <= upper(0.05)
    assert rates(codes)[GONE] > 0.005  # the test is not vacuous: it does err, at about its level


def test_false_gone_rate_with_heavy_tailed_noise() -> None:
    rng = np.random.default_rng(13)
    design = Design(alpha=0.01, max_per_arm=10, min_effect=0.001)
    a = 1 + rng.standard_cauchy((TRIALS, 10)) ** 2
    b = 1 + rng.standard_cauchy((TRIALS, 10)) ** 2
    assert rates(sequential_verdicts(a, b, design)[0])[GONE] <= upper(0.01)


def test_power_for_20_percent_at_10_percent_cv_within_8_windows() -> None:
    rng = np.random.default_rng(21)
    design = Design(alpha=0.01, max_per_arm=8)
    codes, used = sequential_verdicts(lognormal(rng, 0.1, 8), lognormal(rng, 0.1, 8, -0.2), design)
    assert rates(codes)[GONE] >= 0.90
    assert used.max() <= 8
    assert rates(codes)[PERSISTS] <= 0.01


def test_power_for_throughput_rise_with_higher_is_better() -> None:
    rng = np.random.default_rng(22)
    design = Design(alpha=0.01, max_per_arm=8, higher_is_better=True)
    codes, _ = sequential_verdicts(lognormal(rng, 0.1, 8), lognormal(rng, 0.1, 8, 0.25), design)
    assert rates(codes)[GONE] >= 0.90


def test_equivalence_reached_for_a_true_null() -> None:
    rng = np.random.default_rng(31)
    design = Design(alpha=0.01, max_per_arm=10, min_effect=0.10)
    codes, used = sequential_verdicts(lognormal(rng, 0.05, 10), lognormal(rng, 0.05, 10), design)
    r = rates(codes)
    assert r[PERSISTS] >= 0.90
    assert r[GONE] == 0.0
    assert float(np.mean(used)) < 10  # the sequential design stops early on most


def test_false_persists_rate_at_the_min_effect_boundary_is_at_most_alpha() -> None:
    rng = np.random.default_rng(41)
    design = Design(alpha=0.01, max_per_arm=10, min_effect=0.10)
    codes, _ = sequential_verdicts(lognormal(rng, 0.1, 10), lognormal(rng, 0.1, 10, -0.10), design)
    assert rates(codes)[PERSISTS] <= upper(0.01)


def test_early_stop_saves_windows_on_large_effects() -> None:
    rng = np.random.default_rng(51)
    design = Design(alpha=0.01, max_per_arm=10)
    codes, used = sequential_verdicts(
        lognormal(rng, 0.1, 10), lognormal(rng, 0.1, 10, -0.5), design
    )
    assert rates(codes)[GONE] >= 0.99
    assert float(np.mean(used)) <= 6.5
