"""knockout.trial.run_trial over a fake target and a fake symptom: schedule, stops, reverts."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from knockout.arch import get_arch
from knockout.cuts import Cut, Identity, Intent, Return
from knockout.errors import BadInput, TargetGone, UnsafeCut
from knockout.measure import Hot, SymptomFailed
from knockout.symbols import SymbolTable
from knockout.targets import AppliedCut
from knockout.trial import TrialConfig, abba, run_trial

X86 = get_arch("x86_64")
ORIGINAL = bytes(range(0x40, 0x80))


class FakeTarget:
    """Memory in a bytearray; records every apply and revert."""

    arch = X86
    description = "fake"

    def __init__(self, *, fail_apply_at: str | None = None, gone_after: int | None = None) -> None:
        self.mem = bytearray(ORIGINAL)
        self.events: list[tuple[str, str]] = []
        self.fail_apply_at = fail_apply_at
        self.gone_after = gone_after

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.mem[address : address + size])

    def symbols(self) -> SymbolTable:
        raise AssertionError("not used")

    def apply(self, cut: Cut) -> AppliedCut:
        if self.gone_after is not None and len(self.events) >= self.gone_after:
            raise TargetGone("pid 1 exited; nothing left to cut or revert")
        if cut.location == self.fail_apply_at:
            raise UnsafeCut(f"bytes at {cut.location} differ")
        assert self.read(cut.address, cut.size) == cut.old
        self.mem[cut.address : cut.end] = cut.new
        self.events.append(("apply", cut.location))
        return AppliedCut(cut, mechanism="fake")

    def revert(self, applied: AppliedCut) -> None:
        c = applied.cut
        assert self.read(c.address, c.size) == c.new
        self.mem[c.address : c.end] = c.old
        self.events.append(("revert", c.location))

    def in_place(self, c: Cut) -> bool:
        return self.read(c.address, c.size) == c.new and c.new != c.old


def make_cut(location: str = "f", address: int = 0, intent: Intent | None = None) -> Cut:
    old = ORIGINAL[address : address + 2]
    new = old if isinstance(intent, Identity) else b"\x31\xc0"
    return Cut("fake", X86, address, location, old, new, intent or Return(0), 1)


@dataclass
class FakeSymptom:
    """Value 1 (x noise) without the cut, 1 + effect with it; optional failures."""

    target: FakeTarget
    cut: Cut
    effect: float = -0.5
    cv: float = 0.05
    seed: int = 0
    fail_at: int | None = None
    failure: BaseException | None = None
    drift_when: str | None = None  # "cut": the machine drifts exactly in the cut windows
    name: str = "fake"
    unit: str = "s"
    higher_is_better: bool = False
    seen: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def measure(self, seconds: float) -> float:
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            assert self.failure is not None
            raise self.failure
        cut_now = self.target.mem[self.cut.address : self.cut.end] == self.cut.new
        self.seen.append(cut_now)
        applied = cut_now and self.cut.new != self.cut.old
        drift = self.drift_when == "cut" and len(self.seen) % 4 in (0, 3)
        level = 1 + self.effect if applied or drift else 1.0
        return float(level * self.rng.lognormal(0, self.cv))


FAST = TrialConfig(windows=10, window=0.0, profile=False)


def test_abba_schedule() -> None:
    assert list(abba(4)) == ["baseline", "cut", "cut", "baseline"] * 2
    assert list(abba(3)) == ["baseline", "cut", "cut", "baseline", "baseline", "cut"]


def test_large_effect_is_gone_at_the_first_look_and_the_cut_is_only_in_cut_windows() -> None:
    target = FakeTarget()
    c = make_cut()
    sym = FakeSymptom(target, c)
    result = run_trial(target, [c], sym, FAST)
    assert result.verdict == "gone"
    assert result.judgement is not None and result.judgement.look is not None
    assert result.judgement.look.n == 6  # stopped at the first planned look
    arms = [w.arm for w in result.windows]
    assert arms == ["warmup", *list(abba(6))]
    assert sym.seen == [arm == "cut" for arm in arms]  # cut in place exactly in cut windows
    assert target.mem == ORIGINAL
    assert target.events == [("apply", "f"), ("revert", "f")] * 3  # once per ABBA block
    assert result.mechanisms == ["fake"]
    assert result.judgement.effect == pytest.approx(-0.5, abs=0.1)


def test_no_effect_persists() -> None:
    target = FakeTarget()
    c = make_cut()
    result = run_trial(target, [c], FakeSymptom(target, c, effect=0.0, cv=0.01), FAST)
    assert result.verdict == "persists"
    assert target.mem == ORIGINAL


def test_small_effect_in_noise_runs_every_window_and_is_inconclusive() -> None:
    target = FakeTarget()
    c = make_cut()
    result = run_trial(target, [c], FakeSymptom(target, c, effect=-0.08, cv=0.3, seed=3), FAST)
    assert result.verdict == "inconclusive"
    assert len(result.values("baseline")) == len(result.values("cut")) == 10


@pytest.mark.parametrize(
    ("failure", "stopped"),
    [(KeyboardInterrupt(), "interrupted"), (SymptomFailed("repro exited 1"), "symptom failed")],
)
def test_interruption_reverts_and_reports_what_was_measured(
    failure: BaseException, stopped: str
) -> None:
    target = FakeTarget()
    c = make_cut()
    sym = FakeSymptom(target, c, fail_at=3, failure=failure)  # during the second cut window
    result = run_trial(target, [c], sym, FAST)
    assert result.stopped is not None and result.stopped.startswith(stopped)
    assert target.mem == ORIGINAL
    assert target.events[-1] == ("revert", "f")
    assert [w.arm for w in result.windows] == ["warmup", "baseline", "cut"]
    assert result.verdict == "inconclusive"
    assert result.judgement is not None and result.judgement.cut.samples == tuple(
        result.values("cut")
    )


def test_target_gone_ends_the_trial() -> None:
    target = FakeTarget(gone_after=2)
    c = make_cut()
    result = run_trial(target, [c], FakeSymptom(target, c), FAST)
    assert result.stopped is not None and result.stopped.startswith("target gone")


def test_several_cuts_are_one_arm_applied_in_order_reverted_in_reverse() -> None:
    target = FakeTarget()
    first, second = make_cut("f", 0), make_cut("g", 8)
    sym = FakeSymptom(target, second)
    result = run_trial(target, [first, second], sym, FAST)
    assert result.verdict == "gone"
    assert target.events[:4] == [("apply", "f"), ("apply", "g"), ("revert", "g"), ("revert", "f")]
    assert target.mem == ORIGINAL
    assert [c["location"] for c in result.as_dict()["cuts"]] == ["f", "g"]


def test_failed_apply_of_a_later_cut_reverts_the_earlier() -> None:
    target = FakeTarget(fail_apply_at="g")
    first, second = make_cut("f", 0), make_cut("g", 8)
    with pytest.raises(UnsafeCut):
        run_trial(target, [first, second], FakeSymptom(target, first), FAST)
    assert target.events == [("apply", "f"), ("revert", "f")]
    assert target.mem == ORIGINAL


def test_an_aa_trial_never_says_gone_even_on_a_drifting_machine() -> None:
    target = FakeTarget()
    c = make_cut(intent=Identity())
    # the machine slows down exactly during the cut windows: a real A/B would say gone
    sym = FakeSymptom(target, c, effect=-0.5, drift_when="cut")
    result = run_trial(target, [c], sym, FAST)
    assert result.verdict == "inconclusive"
    assert result.judgement is not None and "A/A" in result.judgement.reason
    assert any("A/A" in n for n in result.notes)


def test_impossible_design_is_refused_before_cutting() -> None:
    target = FakeTarget()
    c = make_cut()
    with pytest.raises(BadInput, match="--windows"):
        run_trial(target, [c], FakeSymptom(target, c), TrialConfig(windows=3, window=0.0))
    assert target.events == []


def test_hot_needs_perf() -> None:
    target = FakeTarget()
    with pytest.raises(BadInput, match="needs perf"):
        run_trial(target, [make_cut()], Hot("f"), TrialConfig(window=0.0, profile=False))


def test_json_has_what_the_issue_asks() -> None:
    target = FakeTarget()
    c = make_cut()
    doc = json.loads(json.dumps(run_trial(target, [c], FakeSymptom(target, c), FAST).as_dict()))
    for key in ("verdict", "p_value", "effect", "baseline", "cut", "windows", "profile_diff"):
        assert key in doc
    for arm in ("baseline", "cut"):
        assert set(doc[arm]) >= {"median", "ci", "samples"}
        assert len(doc[arm]["samples"]) == 6
        low, high = doc[arm]["ci"]
        assert low <= doc[arm]["median"] <= high
    assert doc["windows"][0]["arm"] == "warmup"
    assert doc["verdict"] == "gone" and not math.isnan(doc["p_value"])


def test_without_perf_the_trial_goes_on_with_the_symptom_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    target = FakeTarget()
    c = make_cut()
    config = TrialConfig(windows=10, window=0.0, profile=True)
    result = run_trial(target, [c], FakeSymptom(target, c), config)
    assert result.verdict == "gone"
    assert any("apt-get install linux-perf" in n and "symptom alone" in n for n in result.notes)
    assert result.profile_diff == [] and result.heat == ""
