"""knockout.stats: the verdict rules, the explained share, and their error rates by simulation.

Each simulation judges thousands of synthetic trials with the same vectorized
code a real trial uses (:func:`knockout.stats.sequential_verdicts`), from a
seeded RNG.  Window values are lognormal with the stated coefficient of
variation (CV) unless said otherwise; an effect of -20% means the cut arm's
median is 0.8 times the baseline's.  Every rate is checked against its bound
plus 3 binomial standard errors (:func:`upper`), so a test fails only if the
procedure is wrong, not by the luck of one seed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from knockout.errors import BadInput
from knockout.stats import (
    DEFAULT_WINDOWS,
    GONE,
    INCONCLUSIVE,
    PERSISTS,
    REDUCED,
    Design,
    bootstrap_medians,
    explained_ci,
    judge,
    sequential_verdicts,
    verdict_at_look,
)

TRIALS = 4000
N = DEFAULT_WINDOWS
NAMES = {INCONCLUSIVE: "inconclusive", GONE: "gone", PERSISTS: "persists", REDUCED: "reduced"}


def lognormal(
    rng: np.random.Generator, cv: float, median: float = 1.0, n: int = N, trials: int = TRIALS
) -> NDArray[np.float64]:
    """trials x n window values with the given median and CV."""
    sigma = math.sqrt(math.log(1 + cv**2))
    return rng.lognormal(math.log(median), sigma, (trials, n))


def contaminated(
    rng: np.random.Generator, cv: float, median: float = 1.0, share: float = 0.1
) -> NDArray[np.float64]:
    """Lognormal windows of which ``share`` are hit by a busy neighbour (x1.5 to x3)."""
    x = lognormal(rng, cv, median)
    hit = rng.random(x.shape) < share
    return np.where(hit, x * rng.uniform(1.5, 3.0, x.shape), x)


def upper(rate: float, trials: int = TRIALS) -> float:
    """A rate plus 3 binomial standard errors: the sampling slack of a simulated rate."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


def rates(codes: NDArray[np.int8]) -> dict[str, float]:
    return {name: float(np.mean(codes == code)) for code, name in NAMES.items()}


def found(r: dict[str, float]) -> float:
    """Share of trials that named the cut a cause (gone or reduced)."""
    return r["gone"] + r["reduced"]


# -- the design ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"alpha": 0.7}, "--alpha"),
        ({"min_effect": 1.5}, "--min-effect"),
        ({"max_per_arm": 1}, "--windows"),
        ({"gone_at": 0.0}, "--gone-at"),
        ({"gone_at": 1.2}, "--gone-at"),
        ({"healthy": -1.0}, "--healthy"),
        ({"healthy": math.nan}, "--healthy"),
        ({"healthy": 0.0, "higher_is_better": True}, "omit --healthy"),
        ({"alpha_persists": 0.0}, "alpha_persists"),
    ],
)
def test_design_rejects_nonsense(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(BadInput, match=word):
        Design(**kwargs)  # type: ignore[arg-type]


def test_design_defaults_and_looks() -> None:
    d = Design()
    assert (d.alpha, d.alpha_persists, d.min_effect, d.gone_at) == (0.01, 0.05, 0.10, 0.8)
    assert d.max_per_arm == DEFAULT_WINDOWS == 20
    assert d.looks[-1].n == 20 and d.looks[-1].final
    assert d.looks[0].n == 6 and d.looks[0].alpha > 0  # a large effect is found at 6 windows
    assert d.look_at(7) is None and d.look_at(8) is not None
    assert d.healthy_source == "zero" and Design(healthy=13).healthy_source == "--healthy"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_failed_or_negative_windows_are_refused(bad: float) -> None:
    base = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
    with pytest.raises(BadInput, match="window"):
        judge(base, [*base[:5], bad], Design(max_per_arm=6))
    with pytest.raises(BadInput, match="window"):
        verdict_at_look([*base[:5], bad], base, Design(max_per_arm=6))


# -- single judgements: the worked examples ------------------------------------------


SYS_BASE = [54.0, 55.0, 53.0, 54.5, 56.0, 52.0, 54.0, 53.5]
SYS_CUT = [29.0, 30.0, 28.0, 29.5, 31.0, 27.0, 29.0, 28.5]


def test_sys_54_to_29_with_healthy_13_is_reduced_61_percent_never_gone() -> None:
    j = judge(SYS_BASE, SYS_CUT, Design(healthy=13.0, unit="%", max_per_arm=8))
    assert j.verdict == "reduced"
    assert j.explained == pytest.approx((54 - 29) / (54 - 13), abs=0.01)
    assert j.explained_ci is not None and j.explained_ci[0] < 0.61 < j.explained_ci[1] < 0.8
    assert "61% of the excess over healthy 13%" in j.reason and "80%" in j.reason
    assert (j.healthy, j.healthy_source) == (13.0, "--healthy")
    assert j.p_not_gone <= j.look.alpha_persists if j.look else False


def test_without_healthy_the_share_is_the_relative_reduction() -> None:
    j = judge(SYS_BASE, SYS_CUT, Design(max_per_arm=8))
    assert j.verdict == "reduced"
    assert j.explained == pytest.approx(-j.effect)
    assert (j.healthy, j.healthy_source) == (0.0, "zero")
    assert "over zero (no --healthy)" in j.reason


def test_healthy_decides_between_gone_and_reduced() -> None:
    """54% -> 15%: all but 2 points of the excess over 13% are gone, but only 72% of the 54%."""
    near = [15.0, 15.5, 14.5, 15.2, 14.8, 15.1, 14.9, 15.0]
    given = judge(SYS_BASE, near, Design(healthy=13.0, max_per_arm=8))
    zero = judge(SYS_BASE, near, Design(max_per_arm=8))
    assert given.verdict == "gone" and given.explained == pytest.approx(39 / 41, abs=0.01)
    assert zero.verdict == "reduced" and zero.explained == pytest.approx(39 / 54, abs=0.01)


def test_json_form_has_the_explained_share() -> None:
    j = judge(SYS_BASE, SYS_CUT, Design(healthy=13.0, max_per_arm=8))
    d = json.loads(json.dumps(j.as_dict(), allow_nan=False))
    assert d["verdict"] == "reduced"
    assert d["explained"] == pytest.approx(j.explained)
    assert isinstance(d["explained_ci"], list) and len(d["explained_ci"]) == 2
    assert (d["healthy"], d["healthy_source"], d["gone_at"]) == (13.0, "--healthy", 0.8)
    for key in ("p_value", "p_reduced", "p_gone", "p_not_gone", "p_within", "p_not_worse"):
        assert 0 <= d[key] <= 1
    assert d["planned_looks"][-1]["final"] is True


def test_a_baseline_at_healthy_has_nothing_to_explain() -> None:
    base = [12.0, 12.5, 11.5, 12.2, 11.8, 12.0]
    half = judge(base, [v / 2 for v in base], Design(healthy=13.0, max_per_arm=6))
    assert half.verdict == "inconclusive"  # halved, but there was no excess to remove
    assert math.isnan(half.explained) and half.explained_ci is None
    assert "no excess over healthy 13 to explain" in half.reason
    assert half.reason.endswith("check --healthy")
    assert json.loads(json.dumps(half.as_dict(), allow_nan=False))["explained"] is None
    flat = judge(base, [v * 1.01 for v in reversed(base)], Design(healthy=13.0, max_per_arm=6))
    assert flat.verdict == "persists"


def test_a_baseline_within_min_effect_of_healthy_cannot_be_gone() -> None:
    base = [54.0, 54.5, 53.5, 54.2, 53.8, 54.0]
    j = judge(base, [v * 0.5 for v in base], Design(healthy=50.0, max_per_arm=6))
    assert j.verdict == "inconclusive" and j.explained > 1  # would overshoot healthy
    assert "within 10% of healthy" in j.reason and "--healthy" in j.reason


def test_judge_gone_when_clearly_removed() -> None:
    base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0]
    j = judge(base, [0.05, 0.055, 0.045, 0.05, 0.052, 0.048], Design(max_per_arm=6))
    assert j.verdict == "gone"
    assert j.explained == pytest.approx(0.95, abs=0.01)
    assert j.p_value == pytest.approx(1 / math.comb(12, 6))
    assert j.effect_ci is not None and j.effect_ci[0] < -0.9 < j.effect_ci[1] + 0.05
    assert j.baseline.ci is not None and j.baseline.ci[0] <= 1.0 <= j.baseline.ci[1]


def test_judge_persists_when_flat() -> None:
    base = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    j = judge(base, [v * 1.005 for v in reversed(base)], Design(max_per_arm=6))
    assert j.verdict == "persists"
    assert j.p_equivalence < 0.05 and not j.worse
    assert "ruled out" in j.reason


def test_judge_a_worse_cut_persists_and_says_worse() -> None:
    base = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    j = judge(base, [v * 1.5 for v in base], Design(max_per_arm=6))
    assert j.verdict == "persists" and j.worse and "worse" in j.reason
    assert j.p_equivalence > 0.5  # not equivalent: clearly worse
    assert j.explained == pytest.approx(-0.5)


def test_judge_small_reduction_persists() -> None:
    # significant, but only 5%: below --min-effect 10%
    base = [1.0, 1.001, 0.999, 1.0, 1.002, 0.998]
    j = judge(base, [v * 0.95 for v in base], Design(max_per_arm=6))
    assert j.p_reduced < 0.01
    assert j.verdict == "persists"


def test_throughput_is_judged_as_time_per_unit_of_work() -> None:
    base = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0]
    hib = Design(max_per_arm=6, higher_is_better=True)
    double = judge(base, [v * 2 for v in base], hib)
    assert double.verdict == "reduced" and double.effect == pytest.approx(1.0)
    assert double.explained == pytest.approx(0.5)  # 1 - baseline/cut
    assert double.healthy is None and "zero time" in double.reason
    healthy = judge(
        base, [v * 2 for v in base], Design(max_per_arm=6, higher_is_better=True, healthy=210.0)
    )
    # (1/100 - 1/200) / (1/100 - 1/210): nearly all the excess time is gone
    assert healthy.verdict == "gone" and healthy.explained == pytest.approx(0.955, abs=0.01)
    tenfold = judge(base, [v * 10 for v in base], hib)
    assert tenfold.verdict == "gone" and tenfold.explained == pytest.approx(0.9)
    down = judge(base, [v / 2 for v in base], hib)
    assert down.verdict == "persists" and down.worse and down.explained == pytest.approx(-1.0)


def test_a_stalled_throughput_is_worse_not_undefined() -> None:
    base = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0]
    j = judge(base, [0.0] * 6, Design(max_per_arm=6, higher_is_better=True))
    assert j.verdict == "persists" and j.worse and j.explained == -math.inf
    assert json.loads(json.dumps(j.as_dict(), allow_nan=False))["explained"] is None


def test_no_verdict_off_the_planned_looks() -> None:
    j = judge([1.0] * 5, [0.1] * 5, Design(max_per_arm=10))  # 5 is not a look
    assert j.verdict == "inconclusive" and j.look is None
    partial = judge([1.0] * 6, [0.1] * 5, Design(max_per_arm=10))  # unequal: interrupted
    assert partial.verdict == "inconclusive"
    empty = judge([1.0], [], Design())
    assert empty.verdict == "inconclusive" and empty.cut.samples == ()


def test_ties_and_zeros_are_judged() -> None:
    j = judge([2.0, 2.0, 3.0, 2.0, 3.0, 2.0], [0.0] * 6, Design(max_per_arm=6))
    assert j.verdict == "gone" and j.effect == -1.0 and j.explained == 1.0


def test_reduced_waits_while_gone_is_still_possible() -> None:
    """A cut near the gone level is not called reduced early: more windows may show gone."""
    rng = np.random.default_rng(5)
    base, cut = lognormal(rng, 0.1, 1.0, trials=1)[0], lognormal(rng, 0.1, 0.21, trials=1)[0]
    design = Design()
    early = verdict_at_look(list(base[:6]), list(cut[:6]), design)
    assert early is not None and early[1] == "inconclusive"


def test_sequential_matches_step_by_step_judgement() -> None:
    rng = np.random.default_rng(7)
    design = Design(max_per_arm=12)
    medians = np.repeat([1.0, 0.95, 0.85, 0.5, 0.22, 0.05], 10)[:, None]
    a = rng.lognormal(0, 0.1, (60, 12))
    b = rng.lognormal(0, 0.1, (60, 12)) * medians
    codes, used = sequential_verdicts(a, b, design)
    assert set(codes.tolist()) == set(NAMES)  # every verdict occurs
    for i in range(60):
        for n in range(1, 13):
            at_look = verdict_at_look(a[i, :n].tolist(), b[i, :n].tolist(), design)
            if at_look is not None and (at_look[1] != "inconclusive" or n == 12):
                break
        j = judge(a[i, :n].tolist(), b[i, :n].tolist(), design)
        assert at_look is not None and j.verdict == at_look[1]
        assert (j.verdict, n) == (NAMES[int(codes[i])], int(used[i]))


# -- proving absence in reasonable time (issue #9, point 5) ---------------------------------


def test_a_true_null_reaches_persists_within_the_default_windows() -> None:
    """CV 10%, --min-effect 10%: persists >= 80%, false gone/reduced <= 1%."""
    rng = np.random.default_rng(31)
    codes, used = sequential_verdicts(lognormal(rng, 0.1), lognormal(rng, 0.1), Design())
    r = rates(codes)
    assert r["persists"] >= 0.80
    assert found(r) <= upper(0.01)
    assert float(np.mean(used)) < 0.8 * N  # the sequential design stops early on most


def test_a_quiet_null_persists_at_the_first_looks() -> None:
    """The seed's symptom has CV ~2%: persists almost always, in a few windows."""
    rng = np.random.default_rng(32)
    codes, used = sequential_verdicts(lognormal(rng, 0.02), lognormal(rng, 0.02), Design())
    assert rates(codes)["persists"] >= 0.99 and float(np.mean(used)) <= 6.5


@pytest.mark.parametrize(("cv", "alpha"), [(0.05, 0.01), (0.1, 0.01), (0.3, 0.01), (0.1, 0.05)])
def test_aa_is_never_gone_or_reduced_beyond_alpha(cv: float, alpha: float) -> None:
    rng = np.random.default_rng(int(cv * 100) + int(alpha * 1000))
    design = Design(alpha=alpha)
    codes, _ = sequential_verdicts(lognormal(rng, cv), lognormal(rng, cv), design)
    assert found(rates(codes)) <= upper(alpha)


def test_the_reduction_test_alone_errs_at_about_its_level() -> None:
    """With a tiny --min-effect only the p-value guards: it errs, at no more than alpha."""
    rng = np.random.default_rng(12)
    design = Design(alpha=0.05, min_effect=0.001)
    codes, _ = sequential_verdicts(lognormal(rng, 0.1), lognormal(rng, 0.1), design)
    assert 0.02 < found(rates(codes)) <= upper(0.05)  # not vacuous: it does err, near its level


def test_false_persists_at_the_min_effect_boundary_is_at_most_alpha_persists() -> None:
    rng = np.random.default_rng(41)
    codes, _ = sequential_verdicts(lognormal(rng, 0.1), lognormal(rng, 0.1, 0.9), Design())
    assert rates(codes)["persists"] <= upper(0.05)


def test_power_for_20_percent_at_10_percent_cv() -> None:
    rng = np.random.default_rng(21)
    codes, used = sequential_verdicts(lognormal(rng, 0.1), lognormal(rng, 0.1, 0.8), Design())
    r = rates(codes)
    assert found(r) >= 0.90 and r["persists"] <= 0.01
    assert float(np.mean(used)) <= 10


def test_early_stop_saves_windows_on_large_effects() -> None:
    rng = np.random.default_rng(51)
    codes, used = sequential_verdicts(lognormal(rng, 0.1), lognormal(rng, 0.1, 0.5), Design())
    assert found(rates(codes)) >= 0.99
    assert float(np.mean(used)) <= 6.5


# -- the explained share: half cuts, whole cuts, healthy -----------------------------------


def coverage(
    base: NDArray[np.float64],
    cut: NDArray[np.float64],
    used: NDArray[np.int64],
    design: Design,
    truth: float,
) -> float:
    """How often the explained share's CI, at the look where each trial stopped, covers truth."""
    hits = []
    for a, c, n in zip(base, cut, used, strict=True):
        ci = explained_ci(bootstrap_medians(a[:n]), bootstrap_medians(c[:n]), design)
        hits.append(bool(ci[0] <= truth <= ci[1]))
    return float(np.mean(hits))


@pytest.mark.parametrize(
    ("base", "cut", "healthy"), [(1.0, 0.5, None), (54.0, 29.0, 13.0), (54.0, 33.5, 13.0)]
)
def test_a_half_cut_is_reduced_and_its_share_ci_covers_the_truth(
    base: float, cut: float, healthy: float | None
) -> None:
    rng = np.random.default_rng(61)
    design = Design(healthy=healthy)
    a, b = lognormal(rng, 0.1, base, trials=300), lognormal(rng, 0.1, cut, trials=300)
    codes, used = sequential_verdicts(a, b, design)
    assert rates(codes)["reduced"] >= 0.97 and rates(codes)["gone"] == 0.0
    truth = (base - cut) / (base - (healthy or 0.0))
    assert 0.9 <= coverage(a, b, used, design, truth) <= 0.99  # nominal 95%


@pytest.mark.parametrize(("healthy", "cut"), [(None, 0.1), (None, 0.05), (13.0, 15.0)])
def test_a_cut_of_90_percent_or_more_is_gone(healthy: float | None, cut: float) -> None:
    rng = np.random.default_rng(62)
    base = 54.0 if healthy else 1.0
    codes, _ = sequential_verdicts(
        lognormal(rng, 0.1, base), lognormal(rng, 0.1, cut), Design(healthy=healthy)
    )
    assert rates(codes)["gone"] >= 0.95


def test_healthy_given_vs_not_on_the_same_windows() -> None:
    """54 -> 15: gone against healthy 13, only reduced (72%) against zero."""
    rng = np.random.default_rng(63)
    a, b = lognormal(rng, 0.1, 54.0), lognormal(rng, 0.1, 15.0)
    given, _ = sequential_verdicts(a, b, Design(healthy=13.0))
    zero, _ = sequential_verdicts(a, b, Design())
    assert rates(given)["gone"] >= 0.95
    assert rates(zero)["reduced"] >= 0.97 and rates(zero)["gone"] <= upper(0.0)


@pytest.mark.parametrize(
    ("healthy", "noise", "bound"),
    [
        (None, "scaled", 0.01),
        (13.0, "scaled", 0.01),
        (40.0, "scaled", 0.01),
        (13.0, "additive", 0.03),
    ],
)
def test_false_gone_at_the_gone_boundary(healthy: float | None, noise: str, bound: float) -> None:
    """A true share of exactly gone_at (80%): gone at about alpha; at 75%: almost never."""
    rng = np.random.default_rng(64)
    h, b = healthy or 0.0, 54.0
    design = Design(healthy=healthy)
    for share, limit in ((0.8, bound), (0.75, 0.002)):
        c = h + (1 - share) * (b - h)
        if noise == "scaled":
            base, cut = lognormal(rng, 0.1, b), lognormal(rng, 0.1, c)
        else:
            base = rng.normal(b, 5.4, (TRIALS, N))
            cut = np.abs(rng.normal(c, 5.4, (TRIALS, N)))
        codes, _ = sequential_verdicts(base, cut, design)
        assert rates(codes)["gone"] <= upper(limit)


def test_throughput_path_by_simulation() -> None:
    rng = np.random.default_rng(65)
    hib = Design(higher_is_better=True)
    aa, _ = sequential_verdicts(lognormal(rng, 0.1, 100.0), lognormal(rng, 0.1, 100.0), hib)
    # a 10% rise of a rate is a 9.1% cut of its time per unit: a little harder to rule out
    assert found(rates(aa)) <= upper(0.01) and rates(aa)["persists"] >= 0.75
    rise, _ = sequential_verdicts(lognormal(rng, 0.1, 100.0), lognormal(rng, 0.1, 125.0), hib)
    assert rates(rise)["reduced"] >= 0.90  # 20% of the time per unit: reduced, not gone
    whole, _ = sequential_verdicts(lognormal(rng, 0.1, 100.0), lognormal(rng, 0.1, 1000.0), hib)
    assert rates(whole)["gone"] >= 0.95
    # against a healthy rate of 200, a rise to 195 removes 97% of the excess time per unit
    healthy = Design(higher_is_better=True, healthy=200.0)
    near, _ = sequential_verdicts(lognormal(rng, 0.1, 100.0), lognormal(rng, 0.1, 195.0), healthy)
    assert rates(near)["gone"] >= 0.90 and rates(near)["persists"] == 0.0


# -- the noise of a busy 2-core machine ----------------------------------------------------


def test_outlier_windows_never_fake_a_cause() -> None:
    """10% of windows hit by a neighbour (x1.5-x3): A/A stays honest; inconclusive is allowed."""
    rng = np.random.default_rng(71)
    codes, _ = sequential_verdicts(contaminated(rng, 0.1), contaminated(rng, 0.1), Design())
    r = rates(codes)
    assert found(r) <= upper(0.01)
    assert r["persists"] >= 0.5  # the rank tests shrug off most outliers


def test_heavy_tailed_noise_never_fakes_a_cause() -> None:
    rng = np.random.default_rng(72)
    shape = (TRIALS, N)
    a = 1 + np.abs(rng.standard_cauchy(shape))
    b = 1 + np.abs(rng.standard_cauchy(shape))
    codes, _ = sequential_verdicts(a, b, Design(min_effect=0.001))
    assert found(rates(codes)) <= upper(0.01)


def test_outliers_keep_most_power_for_real_effects() -> None:
    rng = np.random.default_rng(73)
    codes, _ = sequential_verdicts(contaminated(rng, 0.1), contaminated(rng, 0.1, 0.8), Design())
    assert found(rates(codes)) >= 0.85 and rates(codes)["persists"] <= 0.01


def test_a_half_cut_under_outliers_is_never_called_gone() -> None:
    rng = np.random.default_rng(74)
    codes, _ = sequential_verdicts(contaminated(rng, 0.2), contaminated(rng, 0.2, 0.5), Design())
    assert rates(codes)["gone"] <= upper(0.001)
