"""Real trial samples, saved from ``knockout trial --save`` on the host, judged again.

Each fixture is a trial of ``tests/fixtures/planted.c`` (a server whose
``planted_cost`` burns 20 ms of system CPU per request) on the 2-CPU host
shared with other builds, with 0.4-0.5 s windows:

* ``trial-cmd-gone``   -- ``planted_cost --return 0``, ``cmd:'planted client SOCK 1'``
* ``trial-cmd-cold``   -- ``cold_path --return 0`` (never called), same symptom
* ``trial-cmd-aa``     -- ``planted_cost --aa``, same symptom
* ``trial-metric-gone``-- ``planted_cost --return 0``, ``metric:'planted rate SOCK 0.2'``,
  ``--higher-is-better``
* ``trial-sys-gone``   -- ``planted_cost --return 0``, ``sys``, with ``planted hammer`` driving
* ``trial-sys-aa``     -- ``planted_cost --aa``, ``sys``, ``--min-effect 30%``
* ``trial-kernel-gone``-- in the TCG guest, ``read_zero --return 0 --kernel``,
  ``cmd:'dd if=/dev/zero of=/dev/null bs=1M count=500'``, 1 s windows
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knockout.stats import Design, judge

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


def _design(doc: dict[str, Any], **changes: Any) -> Design:
    kw = {
        "alpha": doc["alpha"],
        "min_effect": doc["min_effect"],
        "max_per_arm": doc["planned_looks"][-1]["n"],
        "higher_is_better": doc["higher_is_better"],
    }
    kw.update(changes)
    return Design(**kw)


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("trial-cmd-gone", "gone"),
        ("trial-cmd-cold", "persists"),
        ("trial-cmd-aa", "inconclusive"),
        ("trial-metric-gone", "gone"),
        ("trial-sys-gone", "gone"),
        ("trial-sys-aa", "persists"),
        ("trial-kernel-gone", "gone"),
    ],
)
def test_saved_trials_judge_the_same_again(name: str, verdict: str) -> None:
    doc = _load(name)
    j = judge(doc["baseline"]["samples"], doc["cut"]["samples"], _design(doc))
    assert doc["verdict"] == j.verdict == verdict
    assert j.p_value == pytest.approx(doc["p_value"])
    assert j.effect == pytest.approx(doc["effect"])
    assert j.baseline.ci is not None and j.baseline.ci[0] <= j.baseline.median <= j.baseline.ci[1]
    # the windows were ABBA-interleaved after one warm-up
    arms = [w["arm"] for w in doc["windows"]]
    assert arms[0] == "warmup"
    assert arms[1:5] == ["baseline", "cut", "cut", "baseline"]


def test_real_aa_noise_persists_with_a_min_effect_above_the_noise() -> None:
    """The cmd: A/A run (CV about 10%) cannot rule out 10%, but rules out 30%."""
    doc = _load("trial-cmd-aa")
    j = judge(doc["baseline"]["samples"], doc["cut"]["samples"], _design(doc, min_effect=0.3))
    assert j.verdict == "persists"


def test_real_throughput_drop_would_persist_if_read_lower_is_better() -> None:
    """The same metric: numbers, judged the wrong way round, are not 'gone'."""
    doc = _load("trial-metric-gone")
    j = judge(
        doc["baseline"]["samples"], doc["cut"]["samples"], _design(doc, higher_is_better=False)
    )
    assert j.verdict == "persists" and j.worse


def test_saved_profiles_show_the_heat_of_the_planted_cost() -> None:
    gone = _load("trial-cmd-gone")
    burn = next(h for h in gone["profile_diff"] if h["symbol"] == "read_zero")
    assert burn["baseline"] > 0.5 and burn["cut"] < 0.05
    cold = _load("trial-cmd-cold")
    top = {h["symbol"]: h for h in cold["profile_diff"]}
    assert top["read_zero"]["baseline"] > 0.5 and top["read_zero"]["cut"] > 0.5


def test_saved_kernel_trial_shows_the_syscall_path_cost_gone() -> None:
    doc = _load("trial-kernel-gone")
    assert doc["mechanisms"] == ["text_poke_bp+stub"]
    diff = {h["symbol"]: h for h in doc["profile_diff"]}
    assert diff["clear_user_erms"]["baseline"] > 0.5 > diff["clear_user_erms"]["cut"]
    assert diff["read_zero"]["baseline_total"] > 0.5 and diff["read_zero"]["cut_total"] < 0.05
    assert doc["heat"].startswith("clear_user_erms \u2212") and doc["heat"].endswith("symptom gone")
