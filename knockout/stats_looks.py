"""The planned looks of a sequential trial and the level each look spends.

A trial judges after every complete ABBA block (2 windows per arm) and stops
at its first decided look.  Looking repeatedly would inflate a test's error
rate, so each one-sided test gets a *group-sequential* boundary (Lan & DeMets
1983; Jennison & Turnbull, *Group Sequential Methods*, 2000): the cumulative
error it may have made by a look is ``alpha * t ** rho``, where ``t`` is the
look's information fraction, and each look's level is the largest one the
exact test can attain (at 6 vs 6 windows the smallest one-sided p-value is
1/924) whose *new* rejections, given the looks before, fit what is left of
that budget.  What a look cannot use carries forward.

The chance of a new rejection at a look depends on how the looks' statistics
are correlated.  For Mann--Whitney U on nested samples (each look adds windows
to both arms) the correlation of U at ``n_j`` and ``n_k`` windows per arm is
``sqrt(tau(n_j) / tau(n_k))`` with ``tau(n) = n**2 / (2n + 1)`` (the exact
covariance under no difference), so the standardized statistics behave like a
Brownian motion observed at ``t = tau(n) / tau(N)``; the crossing
probabilities are integrated numerically on a grid (Armitage, McPherson &
Rowe 1969).  Against a Monte Carlo of the exact rank statistics this
approximation under-states the error by up to ~5% at 6--30 windows per arm
(the statistics are discrete, and at 6 windows far from normal), so a test
spends :data:`GUARD` (90%) of its alpha; ``tests/unit/test_stats_looks.py``
checks by simulation that the total stays at or below alpha.  Compared with
splitting alpha over the looks by a union bound (the previous design, which
erred at half its nominal rate), this lets the same budget decide with fewer
windows.

>>> looks = plan_looks(0.01, 20)
>>> [(lk.n, round(lk.alpha, 5)) for lk in looks][:3], looks[-1].final
([(6, 0.00108), (8, 0.00148), (10, 0.00144)], True)

The levels sum to more than alpha (0.0192 here): the looks see mostly the
same windows, so their rejections overlap; the chance of *any* rejection is
what stays at or below alpha.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from knockout.errors import BadInput
from knockout.stats_ranks import EXACT_MAX, attainable_levels

__all__ = ["GUARD", "Look", "exact_levels", "look_sizes", "plan_looks", "spend"]

#: the share of alpha a test spends (see the module docstring)
GUARD = 0.90

_STEP = 0.02  # grid of the Brownian motion's value; 0.005 gives the same levels
_GRID = np.arange(-9.0, 9.0 + _STEP / 2, _STEP)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Look:
    """A planned look at ``n`` windows per arm and the level of each test there.

    ``alpha``: the level of the tests that show a reduction (``gone`` and
    ``reduced``); ``alpha_persists``: of the tests that show an absence
    (``persists``, and "not gone" for ``reduced``).  0.0 means that test
    cannot decide at this look.  ``final``: the last planned look.
    """

    n: int
    alpha: float
    alpha_persists: float = 0.0
    final: bool = False

    def as_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready form."""
        return {
            "n": self.n,
            "alpha": self.alpha,
            "alpha_persists": self.alpha_persists,
            "final": self.final,
        }


@functools.lru_cache(maxsize=256)
def exact_levels(n: int, budget: float) -> float:
    """The largest one-sided exact U p-value at ``n`` vs ``n`` that is ≤ ``budget`` (0.0: none).

    >>> exact_levels(6, 0.01) >= 1 / 924, exact_levels(4, 0.01)
    (True, 0.0)
    """
    levels = attainable_levels(n)
    ok = levels[levels <= budget * (1 + 1e-12)]
    return float(ok[-1]) if ok.size else 0.0


def look_sizes(max_per_arm: int, block: int = 2) -> list[int]:
    """Windows per arm at each possible look: every ``block``, and the last.

    >>> look_sizes(7)
    [2, 4, 6, 7]
    """
    sizes = list(range(block, max_per_arm + 1, block))
    if not sizes or sizes[-1] != max_per_arm:
        sizes.append(max_per_arm)
    return sizes


def _information(n: int) -> float:
    """Statistical information of U at n vs n windows (the inverse variance of U / n**2)."""
    return n * n / (2 * n + 1)


def _gaussian(x: NDArray[np.float64], var: float) -> NDArray[np.float64]:
    return np.asarray(np.exp(-x * x / (2 * var)) / math.sqrt(2 * math.pi * var) * _STEP)


def _advance(mass: NDArray[np.float64] | None, dt: float) -> NDArray[np.float64]:
    """Mass of the Brownian motion on the grid, ``dt`` later (None: starting at 0)."""
    if mass is None:
        return _gaussian(_GRID, dt)
    half = math.ceil(8 * math.sqrt(dt) / _STEP)
    kernel = _gaussian(np.arange(-half, half + 1, dtype=np.float64) * _STEP, dt)
    return np.asarray(np.convolve(mass, kernel, mode="same"))


def _candidates(n: int, t: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Levels a look at ``n`` windows could use, ascending, and their boundaries on the grid."""
    if n <= EXACT_MAX:
        levels = attainable_levels(n)
        z = np.array([-_NORMAL.inv_cdf(float(p)) for p in levels])
    else:  # continuous levels: every grid point is a boundary
        z = _GRID[_GRID > 0][::-1] / math.sqrt(t)
        levels = np.array([_NORMAL.cdf(-float(c)) for c in z])
    return levels, z * math.sqrt(t)


def spend(alpha: float, sizes: list[int], rho: float) -> list[float]:
    """The level of one one-sided test at each look, by the group-sequential rule above.

    >>> [round(x, 5) for x in spend(0.05, [6, 8, 10], 2.0)]
    [0.01299, 0.01896, 0.03151]
    """
    levels: list[float] = []
    mass: NDArray[np.float64] | None = None
    spent, t_prev = 0.0, 0.0
    for n in sizes:
        t = _information(n) / _information(sizes[-1])
        mass = _advance(mass, t - t_prev)
        t_prev = t
        budget = GUARD * alpha * (1.0 if n == sizes[-1] else t**rho) - spent
        tail = np.cumsum(mass[::-1])[::-1]  # tail[i]: mass at or above _GRID[i]
        candidates, bounds = _candidates(n, t)
        index = np.searchsorted(_GRID, bounds)
        new = np.where(index < _GRID.size, tail[np.minimum(index, _GRID.size - 1)], 0.0)
        fits = np.flatnonzero(new <= budget)
        if fits.size == 0:
            levels.append(0.0)
            continue
        best = int(fits[-1])
        levels.append(float(candidates[best]))
        spent += float(new[best])
        mass = mass.copy()
        mass[index[best] :] = 0.0  # rejected here: no longer continuing
    return levels


def plan_looks(
    alpha: float,
    max_per_arm: int,
    block: int = 2,
    rho: float = 1.5,
    alpha_persists: float | None = None,
    rho_persists: float | None = None,
) -> tuple[Look, ...]:
    """The looks of a sequential trial; looks where no test could decide are left out.

    ``alpha``/``rho`` shape the boundary of the reduction tests, ``alpha_persists``/
    ``rho_persists`` (default: the same) that of the absence tests.
    """
    sizes = look_sizes(max_per_arm, block)
    reduce_levels = spend(alpha, sizes, rho)
    absent_alpha = alpha if alpha_persists is None else alpha_persists
    absent_levels = spend(absent_alpha, sizes, rho if rho_persists is None else rho_persists)
    if not any(reduce_levels):
        need = next(n for n in range(2, 64) if exact_levels(n, GUARD * alpha) > 0)
        raise BadInput(
            f"{max_per_arm} windows per arm can never reach p < {alpha}; "
            f"use --windows {need} or more, or a larger --alpha"
        )
    return tuple(
        Look(n, a, p, final=n == sizes[-1])
        for n, a, p in zip(sizes, reduce_levels, absent_levels, strict=True)
        if a > 0 or p > 0 or n == sizes[-1]
    )
