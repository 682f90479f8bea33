"""knockout.stats_ranks: the fast exact Mann--Whitney test gives scipy's p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from knockout.stats_ranks import EXACT_MAX, Alternative, attainable_levels, mwu_p, null_sf


@pytest.mark.parametrize(("m", "n"), [(1, 1), (3, 5), (6, 6), (10, 7), (16, 16), (30, 30)])
@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_p_values_are_scipys_exact_ones(m: int, n: int, alternative: Alternative) -> None:
    rng = np.random.default_rng(m * 100 + n)
    x, y = rng.normal(0, 1, (200, m)), rng.normal(0.3, 1, (200, n))
    ours = mwu_p(x, y, alternative)
    ref = sps.mannwhitneyu(x, y, alternative=alternative, method="exact", axis=-1).pvalue
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_ties_count_half_and_round_down_as_scipy_does() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(0, 1, (300, 8)), 1)
    y = np.round(rng.normal(0, 1, (300, 8)), 1)
    assert any(np.intersect1d(a, b).size for a, b in zip(x, y, strict=True))  # ties do occur
    alternatives: tuple[Alternative, ...] = ("less", "greater")
    for alternative in alternatives:
        ref = sps.mannwhitneyu(x, y, alternative=alternative, method="exact", axis=-1).pvalue
        np.testing.assert_allclose(mwu_p(x, y, alternative), ref, rtol=1e-9)
    zeros = mwu_p(np.zeros(6), np.full(6, 2.0), "less")
    assert float(zeros) == pytest.approx(1 / math.comb(12, 6))


def test_large_arms_use_the_normal_approximation() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(0, 1, EXACT_MAX + 5), rng.normal(0.5, 1, EXACT_MAX + 5)
    ref = sps.mannwhitneyu(x, y, alternative="less", method="asymptotic").pvalue
    assert float(mwu_p(x, y, "less")) == pytest.approx(ref)


def test_null_distribution_is_a_symmetric_distribution() -> None:
    for m, n in [(4, 4), (5, 9), (12, 12)]:
        sf = null_sf(m, n)
        pmf = -np.diff(np.append(sf, 0.0))
        assert sf[0] == pytest.approx(1.0) and np.all(pmf >= -1e-15)
        np.testing.assert_allclose(pmf, pmf[::-1], atol=1e-15)
        assert sf[-1] == pytest.approx(1 / math.comb(m + n, m))


def test_attainable_levels_start_at_one_over_the_binomial() -> None:
    levels = attainable_levels(6)
    assert levels[0] == pytest.approx(1 / 924)
    assert np.all(np.diff(levels) > 0) and levels[-1] < 0.5
