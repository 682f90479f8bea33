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

from knockout.measure.profile import HeatShift, describe_heat
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
    ("name", "saved", "verdict"),
    [
        ("trial-cmd-gone", "gone", "gone"),
        ("trial-cmd-cold", "persists", "persists"),
        ("trial-cmd-aa", "inconclusive", "inconclusive"),
        ("trial-metric-gone", "gone", "gone"),
        # the five verdicts: 79% and 80% of the symptom removed, against a healthy zero, is
        # a real reduction that did not show 80% gone -- the three-verdict scheme said gone
        ("trial-sys-gone", "gone", "reduced"),
        ("trial-sys-aa", "persists", "persists"),
        ("trial-kernel-gone", "gone", "reduced"),
    ],
)
def test_saved_trials_judged_again_with_the_five_verdicts(
    name: str, saved: str, verdict: str
) -> None:
    """Each saved trial judged again as if it had ended at its last look."""
    doc = _load(name)
    baseline, cut = doc["baseline"]["samples"], doc["cut"]["samples"]
    j = judge(baseline, cut, _design(doc, max_per_arm=min(len(baseline), len(cut))))
    assert doc["verdict"] == saved and j.verdict == verdict, j.reason
    assert j.effect == pytest.approx(doc["effect"])
    assert j.baseline.ci is not None and j.baseline.ci[0] <= j.baseline.median <= j.baseline.ci[1]
    if verdict in ("gone", "reduced"):
        assert j.explained_ci is not None
        assert j.explained_ci[0] <= j.explained <= j.explained_ci[1]
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


def _shifts(doc: dict[str, Any]) -> list[HeatShift]:
    keys = ("symbol", "baseline", "cut", "baseline_total", "cut_total")
    return [HeatShift(*(h[k] for k in keys)) for h in doc["profile_diff"]]


@pytest.mark.parametrize("name", ["trial-cmd-gone", "trial-cmd-cold", "trial-kernel-gone"])
def test_saved_profiles_describe_the_heat_again(name: str) -> None:
    """The heat line is derived again from the saved shares.

    The saved lines were written before shifts within sampling noise were
    left out, so they equal the line made without sample counts; with the
    counts, only shifts larger than the noise of that many samples remain.
    """
    doc = _load(name)
    shifts = _shifts(doc)
    assert describe_heat(shifts, doc["verdict"]) == doc["heat"]
    busy = (doc["profiles"]["baseline"]["busy"], doc["profiles"]["cut"]["busy"])
    filtered = describe_heat(shifts, doc["verdict"], busy=busy)
    moved = [] if filtered.startswith("profile unchanged") else filtered.split(":")[0].split(", ")
    assert {part.rsplit(" ", 1)[0] for part in moved} <= {h.symbol for h in shifts}
    if name != "trial-cmd-cold":  # the cost left: its drop is far beyond sampling noise
        assert filtered.split(":")[0].split(", ")[0] == doc["heat"].split(", ")[0]


def test_the_heat_of_the_planted_cost_left_with_the_cut() -> None:
    gone = {h.symbol: h for h in _shifts(_load("trial-cmd-gone"))}
    assert gone["read_zero"].baseline > 0.5 and gone["read_zero"].cut < 0.05
    cold = {h.symbol: h for h in _shifts(_load("trial-cmd-cold"))}
    assert cold["read_zero"].baseline > 0.5 and cold["read_zero"].cut > 0.5
    kernel = _load("trial-kernel-gone")
    assert kernel["mechanisms"] == ["text_poke_bp+stub"]
    diff = {h.symbol: h for h in _shifts(kernel)}
    assert diff["clear_user_erms"].baseline > 0.5 > diff["clear_user_erms"].cut
    assert diff["read_zero"].baseline_total > 0.5 and diff["read_zero"].cut_total < 0.05
    assert describe_heat(list(diff.values()), "gone").startswith("clear_user_erms \u2212")
