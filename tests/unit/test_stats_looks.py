"""knockout.stats_looks: the group-sequential levels, checked against the exact rank statistics.

Under no difference, every ordering of a trial's 2N window values is equally
likely, whatever their distribution: so the joint law of the Mann--Whitney
statistics at the looks is that of uniform random numbers.  The Monte Carlo
here draws it directly (U at n windows per arm is the n x n corner of the
cumulative pair-count matrix) and measures each boundary's total error rate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from knockout.errors import BadInput
from knockout.stats_looks import GUARD, exact_levels, look_sizes, plan_looks, spend
from knockout.stats_ranks import null_sf

PATHS = 100_000


def null_u_paths(max_per_arm: int, sizes: list[int], seed: int) -> NDArray[np.int64]:
    """U (pairs cut > baseline) at each look size, for PATHS trials under no difference."""
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(PATHS // 10_000):
        base, cut = rng.random((10_000, max_per_arm)), rng.random((10_000, max_per_arm))
        pairs = (cut[:, :, None] > base[:, None, :]).astype(np.int16)
        corner = pairs.cumsum(axis=1, dtype=np.int32).cumsum(axis=2, dtype=np.int32)
        chunks.append(np.stack([corner[:, n - 1, n - 1] for n in sizes], axis=1))
    return np.concatenate(chunks).astype(np.int64)


def total_error(max_per_arm: int, alpha: float, rho: float, seed: int) -> float:
    """The share of null trials that some look rejects (one-sided, "cut lower")."""
    sizes = look_sizes(max_per_arm)
    levels = spend(alpha, sizes, rho)
    u = null_u_paths(max_per_arm, sizes, seed)
    rejected = np.zeros(PATHS, dtype=bool)
    for k, (n, level) in enumerate(zip(sizes, levels, strict=True)):
        p = null_sf(n, n)[n * n - u[:, k]]  # P(U' >= n*n - U): the exact "less" p-value
        rejected |= p <= level
    return float(np.mean(rejected))


@pytest.mark.parametrize(
    ("windows", "alpha", "rho"),
    [(20, 0.01, 1.5), (20, 0.05, 2.0), (10, 0.05, 3.0), (16, 0.01, 2.0), (30, 0.01, 1.0)],
)
def test_total_error_is_at_most_alpha_and_uses_most_of_it(
    windows: int, alpha: float, rho: float
) -> None:
    rate = total_error(windows, alpha, rho, seed=windows)
    se = math.sqrt(alpha * (1 - alpha) / PATHS)
    assert rate <= alpha + 3 * se
    # not wasteful: a union bound over these looks erred at about half its alpha
    assert rate >= 0.8 * GUARD * alpha


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("windows", [6, 8, 10, 16, 30])
def test_levels_are_attainable_and_the_last_look_is_final(alpha: float, windows: int) -> None:
    looks = plan_looks(alpha, windows, alpha_persists=0.05)
    assert [lk.n for lk in looks] == sorted({lk.n for lk in looks})
    assert looks[-1].n == windows and looks[-1].final
    assert not any(lk.final for lk in looks[:-1])
    for look in looks:
        for level in (look.alpha, look.alpha_persists):
            # a level the exact test can attain, so no budget is lost to rounding
            assert level == 0 or exact_levels(look.n, level) == pytest.approx(level)
        assert 0 <= look.alpha <= alpha and look.alpha_persists <= 0.05


def test_levels_grow_with_the_looks() -> None:
    levels = [lv for lv in spend(0.05, look_sizes(20), 2.0) if lv > 0]
    assert levels == sorted(levels) and len(levels) >= 8


def test_smallest_exact_p_is_one_over_binomial() -> None:
    assert exact_levels(6, 0.01) >= 1 / math.comb(12, 6)
    assert exact_levels(6, 1 / math.comb(12, 6)) == pytest.approx(1 / math.comb(12, 6))
    assert exact_levels(4, 0.01) == 0.0  # 1/70 > 0.01: no outcome at 4 vs 4 is significant


def test_too_few_windows_says_how_many() -> None:
    with pytest.raises(BadInput, match="--windows 5 "):
        plan_looks(0.01, 4)


def test_beyond_the_exact_table_levels_are_continuous() -> None:
    levels = spend(0.01, [20, 40, 60], 2.0)
    assert 0 < levels[0] < levels[1] < levels[2] < 0.01
