"""Windows and seconds to a verdict: knockout's sequential trial vs a fixed 10 windows per arm.

Coz (Curtsinger & Berger, SOSP 2015) and most A/B practice run a fixed
number of experiments and judge once.  knockout looks after every ABBA block
and stops as soon as the verdict is decided at the stated alpha.  This bench
judges *the same* synthetic trials both ways, at true effects of 0 (a null
cut), 10%, 20% and 50% reduction, under two noise models:

* ``lognormal-cv10`` -- lognormal window values, CV 10%, 5 s windows;
* ``real-<name>``    -- window values resampled from a real A/A trial saved
  in tests/fixtures (its noise, normalized by each arm's median), with that
  trial's real seconds per window (measurement plus apply/revert overhead).

Both designs use the same tests (exact Mann--Whitney U, alpha 0.01, min
effect 10%); the fixed design has one look at 10 windows per arm.  Windows
count both arms plus the discarded warm-up window.

Writes bench/out/time_to_verdict.json and prints a table.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.stats import GONE, INCONCLUSIVE, PERSISTS, Design, sequential_verdicts  # noqa: E402

TRIALS = 4000
PER_ARM = 10
EFFECTS = (0.0, 0.10, 0.20, 0.50)
WINDOW_SECONDS = 5.0
OUT = ROOT / "bench" / "out" / "time_to_verdict.json"
REAL = ("trial-cmd-aa", "trial-sys-aa")


def _noise_lognormal(rng: np.random.Generator, shape: tuple[int, int]) -> NDArray[np.float64]:
    sigma = math.sqrt(math.log(1 + 0.1**2))
    return rng.lognormal(0.0, sigma, shape)


def _real_noise(name: str) -> tuple[NDArray[np.float64], float]:
    """Normalized window values of a saved A/A trial, and its seconds per window."""
    doc = json.loads((ROOT / "tests" / "fixtures" / f"{name}.json").read_text())
    arms = [np.asarray(doc[arm]["samples"], dtype=np.float64) for arm in ("baseline", "cut")]
    pool = np.concatenate([a / np.median(a) for a in arms])
    return pool, float(doc["seconds"]) / len(doc["windows"])


def _summary(codes: NDArray[np.int8], per_arm: NDArray[np.int64], seconds: float) -> dict[str, Any]:
    windows = 2 * per_arm + 1  # both arms and the warm-up
    return {
        "gone": float(np.mean(codes == GONE)),
        "persists": float(np.mean(codes == PERSISTS)),
        "inconclusive": float(np.mean(codes == INCONCLUSIVE)),
        "mean_windows": float(np.mean(windows)),
        "median_windows": float(np.median(windows)),
        "mean_seconds": float(np.mean(windows) * seconds),
    }


def run() -> dict[str, Any]:
    """Every noise model x effect, sequential and fixed, on the same data."""
    rng = np.random.default_rng(2015)
    sequential = Design(alpha=0.01, min_effect=0.10, max_per_arm=PER_ARM)
    fixed = Design(alpha=0.01, min_effect=0.10, max_per_arm=PER_ARM, block=PER_ARM)
    models: dict[str, tuple[Any, float]] = {"lognormal-cv10": (None, WINDOW_SECONDS)}
    for name in REAL:
        models[f"real-{name}"] = _real_noise(name)
    rows = []
    for model, (pool, seconds) in models.items():
        for effect in EFFECTS:
            shape = (TRIALS, PER_ARM)
            if pool is None:
                a, b = _noise_lognormal(rng, shape), _noise_lognormal(rng, shape)
            else:
                a, b = rng.choice(pool, shape), rng.choice(pool, shape)
            b = b * (1 - effect)
            seq_codes, seq_n = sequential_verdicts(a, b, sequential)
            fix_codes, fix_n = sequential_verdicts(a, b, fixed)
            fix_n[:] = PER_ARM  # the fixed design always runs all windows
            rows.append(
                {
                    "noise": model,
                    "effect": -effect if effect else 0.0,
                    "seconds_per_window": seconds,
                    "sequential": _summary(seq_codes, seq_n, seconds),
                    "fixed_10_per_arm": _summary(fix_codes, fix_n, seconds),
                }
            )
    return {
        "trials_per_cell": TRIALS,
        "alpha": 0.01,
        "min_effect": 0.10,
        "max_windows_per_arm": PER_ARM,
        "sequential_looks": [{"n": lk.n, "alpha": lk.alpha} for lk in sequential.looks],
        "fixed_look": [{"n": lk.n, "alpha": lk.alpha} for lk in fixed.looks],
        "results": rows,
    }


def main() -> int:
    """Run, write the JSON, print a table."""
    t0 = time.perf_counter()
    doc = run()
    doc["bench_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    head = f"{'noise':<22} {'effect':>6}  {'design':<10} {'gone':>5} {'pers.':>5} {'inc.':>5}"
    print(head + f" {'windows':>7} {'seconds':>8}")
    for row in doc["results"]:
        for design in ("sequential", "fixed_10_per_arm"):
            s = row[design]
            print(
                f"{row['noise']:<22} {row['effect']:>+6.0%}  {design[:10]:<10} "
                f"{s['gone']:>5.2f} {s['persists']:>5.2f} {s['inconclusive']:>5.2f} "
                f"{s['mean_windows']:>7.1f} {s['mean_seconds']:>8.1f}"
            )
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
