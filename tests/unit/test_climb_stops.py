"""The climb stops when the symptom left the baseline: an earlier cut changed the system.

The demo's climb cut shrink_node (breaks: an OOM kill took a worker) and went on
judging frames on a system whose baseline was back near healthy.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from knockout.search.climb import FrameResult, baseline_excess, symptom_left
from knockout.search.hotpath import HotFrame, hot_path
from knockout.stats import Design
from knockout.trial import TrialResult, Window


def _trial(
    baseline: list[float], *, healthy: float | None = 5.0, higher: bool = False
) -> TrialResult:
    windows = [Window(i, "baseline", v, float(i), i + 1.0) for i, v in enumerate(baseline)]
    design = Design(healthy=healthy, higher_is_better=higher)
    return TrialResult(cuts=[], symptom="sys", unit="%", design=design, windows=windows)


def _frame(name: str, depth: int, trial: TrialResult) -> FrameResult:
    return FrameResult(HotFrame(name, depth, 0.5, 0.5, 0.1), trial=trial)


def test_a_baseline_near_healthy_is_the_symptom_gone() -> None:
    first = _frame("shrink_node", 1, _trial([31.0, 30.0, 29.0]))
    later = _frame("do_try_to_free_pages", 2, _trial([11.0, 8.0, 6.0, 9.0]))
    said = symptom_left(first, later)
    assert said is not None
    assert "8.5%" in said and "30%" in said and "do_try_to_free_pages" in said


def test_a_baseline_still_sick_goes_on() -> None:
    first = _frame("shrink_slab", 0, _trial([21.5, 22.0, 21.0]))
    later = _frame("shrink_node", 1, _trial([20.0, 19.0, 18.0]))  # noise, still sick
    assert symptom_left(first, later) is None


def test_a_throughput_is_judged_as_time_per_unit() -> None:
    # healthy 100 ops/s; sick 20 ops/s; later 90 ops/s: the symptom left
    assert baseline_excess(_trial([20.0], healthy=100.0, higher=True)) == pytest.approx(0.04)
    first = _frame("a", 0, _trial([20.0, 20.0], healthy=100.0, higher=True))
    later = _frame("b", 1, _trial([90.0, 90.0], healthy=100.0, higher=True))
    assert symptom_left(first, later) is not None
    assert symptom_left(first, _frame("c", 2, _trial([22.0], healthy=100.0, higher=True))) is None


def test_the_cost_split_names_the_widest_fan_out_and_the_top_frames_rate() -> None:
    from knockout.search.climb import _upstream

    node = _frame("shrink_node", 1, _trial([30.0]))
    node.calls_per_s, node.fanout = 60.2, {"mem_cgroup_iter": 3020.0, "shrink_lruvec": 3000.0}
    charge = _frame("try_charge_memcg", 4, _trial([30.0]))
    charge.calls_per_s, charge.fanout = 768.0, {"try_to_free_mem_cgroup_pages": 0.0194}
    said = _upstream([node, charge])
    assert said.startswith(
        ": the cost is made upstream, shrink_node runs 60.2 times/s and each run makes "
        "3.02e+03 calls of mem_cgroup_iter"
    )
    assert said.endswith("try_charge_memcg, the highest frame counted, runs 768 times/s")


class _FakeRecorder:
    """A perf recorder whose first recording comes back empty (as seen once in a TCG guest)."""

    recordings: ClassVar[list[list[str]]] = []
    slept: ClassVar[list[float]] = []

    def __init__(self, workdir: object, *, pid: int | None, kallsyms: str | None) -> None:
        self.freq = 499

    def start(self) -> None:
        pass

    def rotate(self) -> str | None:
        return "data" if self.recordings and self.recordings[0] else None

    def script(self, data: str) -> list[object]:
        from knockout.measure.perf import Sample

        stack = tuple(self.recordings[0])
        return [Sample("w", 7, 7, 0.0, stack, (), ("[kernel.kallsyms]",) * len(stack))]

    def stop(self) -> None:
        self.recordings.pop(0)


def test_an_empty_profile_is_taken_once_more_over_twice_the_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import time
    from types import SimpleNamespace

    from knockout.search import climb as climb_module

    _FakeRecorder.recordings = [[], ["leaf", "caller"]]
    _FakeRecorder.slept = []
    monkeypatch.setattr(climb_module, "Recorder", _FakeRecorder)
    monkeypatch.setattr(time, "sleep", _FakeRecorder.slept.append)
    target = SimpleNamespace(pid=None, abilities=SimpleNamespace(kernel_text=True))
    profiled = climb_module.profile_target(target, 4.0, tmp_path)  # type: ignore[arg-type]
    assert _FakeRecorder.slept == [4.0, 8.0] and profiled.seconds == 8.0
    assert [f.symbol for f in hot_path(profiled.profile)] == ["leaf", "caller"]
