"""Windows and seconds to a verdict, and how often each verdict is given, per effect and noise.

Three procedures judge *the same* synthetic trials:

* ``new``      -- knockout's design (:mod:`knockout.stats`): gone / reduced /
  persists / inconclusive, group-sequential looks every ABBA block, up to
  ``DEFAULT_WINDOWS`` per arm, alpha 1% for a cause, 5% for an absence;
* ``old``      -- the design before issue #9: gone / persists / inconclusive,
  alpha 1% split over the looks by a union bound, up to 10 windows per arm
  ("gone" there meant any reduction of at least min-effect);
* ``pinpoint`` -- Chromium's bisect rule, rebuilt here from its description:
  p = min(two-sided Kolmogorov--Smirnov, two-sided Mann--Whitney); "different"
  at p <= 0.01 (read as a cause when the cut reduced the symptom by at least
  min-effect, else as no cause), "same" above a high threshold, else more
  windows, up to the same cap as ``new``.  The high threshold at n windows is
  the 99th percentile of p when the arms differ by min-effect under normal
  noise of the model's own spread (computed here by simulation, as Pinpoint
  computes its table; the spread is given to it exactly, which favours it).

``breaks`` is decided by the trial from evidence outside the window values
(a crash, a kernel warning, OOM kills, the work rate) and never appears here.

Noise models: lognormal window values at CV 2% (the seed's symptom), 10% and
20% (a busy host); ``outliers-cv10`` (10% of windows hit x1.5-x3 by a
neighbour); ``real-<name>``, window values resampled from a real A/A trial in
tests/fixtures (its noise, normalized by each arm's median) with its real
seconds per window.  Effects: 0 (a null cut), -10% (exactly min-effect), -20%,
-50%, -90%.  Windows count both arms plus the discarded warm-up; synthetic
windows are 5 s.

Writes bench/out/time_to_verdict.json and prints a table.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.stats import (  # noqa: E402
    DEFAULT_WINDOWS,
    GONE,
    INCONCLUSIVE,
    PERSISTS,
    REDUCED,
    Design,
    sequential_verdicts,
)
from knockout.stats_looks import exact_levels, look_sizes  # noqa: E402
from knockout.stats_ranks import mwu_p  # noqa: E402

TRIALS = 4000
MIN_EFFECT = 0.10
OLD_PER_ARM = 10
EFFECTS = (0.0, 0.10, 0.20, 0.50, 0.90)
WINDOW_SECONDS = 5.0
OUT = ROOT / "bench" / "out" / "time_to_verdict.json"
REAL = ("trial-cmd-aa", "trial-sys-aa")
Verdicts = tuple[NDArray[np.int8], NDArray[np.int64]]


# -- the noise models --------------------------------------------------------------------------


def _lognormal(cv: float) -> Callable[[np.random.Generator, tuple[int, int]], NDArray[np.float64]]:
    sigma = math.sqrt(math.log(1 + cv**2))
    return lambda rng, shape: rng.lognormal(0.0, sigma, shape)


def _outliers(rng: np.random.Generator, shape: tuple[int, int]) -> NDArray[np.float64]:
    x = _lognormal(0.10)(rng, shape)
    return np.where(rng.random(shape) < 0.1, x * rng.uniform(1.5, 3.0, shape), x)


def _real(name: str) -> tuple[NDArray[np.float64], float]:
    """Normalized window values of a saved A/A trial, and its seconds per window."""
    doc = json.loads((ROOT / "tests" / "fixtures" / f"{name}.json").read_text())
    arms = [np.asarray(doc[arm]["samples"], dtype=np.float64) for arm in ("baseline", "cut")]
    pool = np.concatenate([a / np.median(a) for a in arms])
    return pool, float(doc["seconds"]) / len(doc["windows"])


# -- the old procedure (knockout before issue #9), rebuilt on the same exact test --------------


def _old_levels() -> list[tuple[int, float]]:
    spent, out = 0.0, []
    for n in look_sizes(OLD_PER_ARM):
        budget = 0.01 if n == OLD_PER_ARM else 0.01 * (n / OLD_PER_ARM) ** 3
        level = exact_levels(n, budget - spent)
        if level > 0:
            out.append((n, level))
            spent += level
    return out


def old_verdicts(a: NDArray[np.float64], b: NDArray[np.float64]) -> Verdicts:
    codes = np.zeros(a.shape[0], dtype=np.int8)
    used = np.full(a.shape[0], OLD_PER_ARM, dtype=np.int64)
    open_ = np.ones(a.shape[0], dtype=bool)
    for n, level in _old_levels():
        x, y = a[:, :n], b[:, :n]
        effect = np.median(y, axis=-1) / np.median(x, axis=-1) - 1
        gone = (mwu_p(y, x, "less") <= level) & (-effect >= MIN_EFFECT)
        persists = ~gone & (mwu_p(y, (1 - MIN_EFFECT) * x, "greater") <= level)
        now = np.where(gone, GONE, np.where(persists, PERSISTS, INCONCLUSIVE)).astype(np.int8)
        hit = open_ & (now != INCONCLUSIVE)
        codes[hit], used[hit] = now[hit], n
        open_ &= ~hit
    return codes, used


# -- a Pinpoint-style rule ------------------------------------------------------------------


@functools.cache
def _ks_table(n: int) -> NDArray[np.float64]:
    """Two-sided exact KS p-value at n vs n for D = k/n, k = 0..n."""
    x = np.arange(n, dtype=np.float64)
    with warnings.catch_warnings():  # scipy falls back to the asymptotic form for some k
        warnings.simplefilter("ignore", RuntimeWarning)
        table = [1.0] + [
            float(sps.ks_2samp(x, x + k - 0.5, method="exact").pvalue) for k in range(1, n + 1)
        ]
    return np.asarray(table)


def _ks_p(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    n = x.shape[-1]
    both = np.concatenate([x, y], axis=-1)[..., None, :]  # evaluate the ECDFs at every value
    fx = np.count_nonzero(x[..., :, None] <= both, axis=-2)
    fy = np.count_nonzero(y[..., :, None] <= both, axis=-2)
    return np.asarray(_ks_table(n)[np.max(np.abs(fx - fy), axis=-1)], dtype=np.float64)


def _pinpoint_p(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    mw = np.minimum(1.0, 2 * np.minimum(mwu_p(x, y, "less"), mwu_p(x, y, "greater")))
    return np.asarray(np.minimum(_ks_p(x, y), mw), dtype=np.float64)


def _high_thresholds(sigma: float, sizes: list[int], rng: np.random.Generator) -> list[float]:
    """99th percentile of p at each size, arms ``min-effect`` apart under normal noise."""
    shift = -math.log(1 - MIN_EFFECT) / sigma  # in units of the noise's sd (log scale)
    a = rng.normal(0.0, 1.0, (20_000, sizes[-1]))
    b = rng.normal(shift, 1.0, (20_000, sizes[-1]))
    return [float(np.percentile(_pinpoint_p(a[:, :n], b[:, :n]), 99)) for n in sizes]


def pinpoint_verdicts(
    a: NDArray[np.float64], b: NDArray[np.float64], sigma: float, rng: np.random.Generator
) -> Verdicts:
    sizes = look_sizes(DEFAULT_WINDOWS)
    highs = _high_thresholds(sigma, sizes, rng)
    codes = np.zeros(a.shape[0], dtype=np.int8)
    used = np.full(a.shape[0], DEFAULT_WINDOWS, dtype=np.int64)
    open_ = np.ones(a.shape[0], dtype=bool)
    for n, high in zip(sizes, highs, strict=True):
        x, y = a[:, :n], b[:, :n]
        p = _pinpoint_p(y, x)
        cause = -(np.median(y, axis=-1) / np.median(x, axis=-1) - 1) >= MIN_EFFECT
        different, same = p <= 0.01, p > max(high, 0.01)
        now = np.where(different & cause, GONE, np.where(different | same, PERSISTS, 0))
        hit = open_ & (now != INCONCLUSIVE)
        codes[hit], used[hit] = now[hit].astype(np.int8), n
        open_ &= ~hit
    return codes, used


# -- the table -------------------------------------------------------------------------------


def _summary(verdicts: Verdicts, seconds: float) -> dict[str, Any]:
    codes, per_arm = verdicts
    windows = 2 * per_arm + 1  # both arms and the warm-up
    share = {k: float(np.mean(codes == c)) for k, c in (("gone", GONE), ("reduced", REDUCED))}
    return {
        **share,
        "found": share["gone"] + share["reduced"],
        "persists": float(np.mean(codes == PERSISTS)),
        "inconclusive": float(np.mean(codes == INCONCLUSIVE)),
        "mean_windows": float(np.mean(windows)),
        "median_windows": float(np.median(windows)),
        "max_windows": int(np.max(windows)),
        "mean_seconds": float(np.mean(windows) * seconds),
    }


def _models() -> dict[str, tuple[Any, float, float]]:
    """name -> (sampler or pool, seconds per window, sd of the log values)."""
    models: dict[str, tuple[Any, float, float]] = {}
    for cv in (0.02, 0.10, 0.20):
        models[f"lognormal-cv{round(cv * 100):02d}"] = (
            _lognormal(cv),
            WINDOW_SECONDS,
            math.sqrt(math.log(1 + cv**2)),
        )
    rng = np.random.default_rng(1)
    models["outliers-cv10"] = (
        _outliers,
        WINDOW_SECONDS,
        float(np.std(np.log(_outliers(rng, (1, 100_000))))),
    )
    for name in REAL:
        pool, seconds = _real(name)
        models[f"real-{name}"] = (pool, seconds, float(np.std(np.log(pool))))
    return models


def run() -> dict[str, Any]:
    """Every noise model x effect, three procedures on the same data."""
    rng = np.random.default_rng(2015)
    design = Design(min_effect=MIN_EFFECT)
    rows = []
    for model, (source, seconds, sigma) in _models().items():
        for effect in EFFECTS:
            shape = (TRIALS, DEFAULT_WINDOWS)
            if callable(source):
                a, b = source(rng, shape), source(rng, shape)
            else:
                a, b = rng.choice(source, shape), rng.choice(source, shape)
            b = b * (1 - effect)
            rows.append(
                {
                    "noise": model,
                    "effect": -effect if effect else 0.0,
                    "seconds_per_window": seconds,
                    "new": _summary(sequential_verdicts(a, b, design), seconds),
                    "old": _summary(old_verdicts(a[:, :OLD_PER_ARM], b[:, :OLD_PER_ARM]), seconds),
                    "pinpoint": _summary(pinpoint_verdicts(a, b, sigma, rng), seconds),
                }
            )
    return {
        "trials_per_cell": TRIALS,
        "alpha": design.alpha,
        "alpha_persists": design.alpha_persists,
        "min_effect": MIN_EFFECT,
        "gone_at": design.gone_at,
        "max_windows_per_arm": {
            "new": DEFAULT_WINDOWS,
            "old": OLD_PER_ARM,
            "pinpoint": DEFAULT_WINDOWS,
        },
        "new_looks": [lk.as_dict() for lk in design.looks],
        "old_looks": [{"n": n, "alpha": lv} for n, lv in _old_levels()],
        "breaks": "decided by the trial from evidence outside the window values; never here",
        "results": rows,
    }


def main() -> int:
    """Run, write the JSON, print a table."""
    t0 = time.perf_counter()
    doc = run()
    doc["bench_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    head = f"{'noise':<22} {'effect':>6}  {'design':<8} {'gone':>5} {'red.':>5} {'pers.':>5}"
    print(head + f" {'inc.':>5} {'windows':>7} {'seconds':>8}")
    for row in doc["results"]:
        for design in ("new", "old", "pinpoint"):
            s = row[design]
            print(
                f"{row['noise']:<22} {row['effect']:>+6.0%}  {design:<8} "
                f"{s['gone']:>5.3f} {s['reduced']:>5.3f} {s['persists']:>5.3f} "
                f"{s['inconclusive']:>5.3f} {s['mean_windows']:>7.1f} {s['mean_seconds']:>8.1f}"
            )
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
