"""knockout.trial.run_trial over a fake target and a fake symptom: schedule, stops, reverts."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from knockout.arch import CodeStyle, get_arch
from knockout.cuts import Cut, Identity, Intent, Return
from knockout.errors import BadInput, TargetGone, UnsafeCut
from knockout.measure import Hot, Metric, SymptomFailed
from knockout.symbols import SymbolTable
from knockout.targets import Abilities, AppliedCut
from knockout.trial import TrialConfig, abba, run_trial

X86 = get_arch("x86_64")
ORIGINAL = bytes(range(0x40, 0x80))


class FakeTarget:
    """Memory in a bytearray; records every apply and revert."""

    arch = X86
    description = "fake"
    abilities = Abilities(detach=False, dead_man="none: a test")
    pid: int | None = None

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

    def alive(self) -> bool:
        return True

    def code_style(self) -> CodeStyle:
        return CodeStyle()

    def leave(self, applied: AppliedCut) -> AppliedCut:
        raise AssertionError("not used")

    def close(self) -> None:
        self.events.append(("close", ""))

    def in_place(self, applied: AppliedCut) -> str | None:
        c = applied.cut
        return None if self.read(c.address, c.size) == c.new else f"{c.location} overwritten"


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


#: the fake symptom is 1 without the cut and 1 + effect with it: healthy is where the cut lands
FAST = TrialConfig(windows=10, window=0.0, profile=False, healthy=0.5)


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
    first = result.design.looks[0].n
    assert result.judgement.look.n == first  # stopped at the first planned look
    arms = [w.arm for w in result.windows]
    assert arms == ["warmup", *list(abba(first))]
    assert sym.seen == [arm == "cut" for arm in arms]  # cut in place exactly in cut windows
    assert target.mem == ORIGINAL
    blocks = (first + 1) // 2
    assert target.events == [("apply", "f"), ("revert", "f")] * blocks  # once per ABBA block
    assert result.mechanisms == ["fake"]
    assert result.judgement.effect == pytest.approx(-0.5, abs=0.1)
    assert result.judgement.explained == pytest.approx(1.0, abs=0.2)


def test_half_the_excess_removed_is_reduced_with_its_share() -> None:
    target = FakeTarget()
    c = make_cut()
    config = replace(FAST, healthy=0.0)  # the cut halves the symptom: half of its excess
    result = run_trial(target, [c], FakeSymptom(target, c, cv=0.02), config)
    assert result.verdict == "reduced", result.reason
    assert result.judgement is not None
    assert result.judgement.explained == pytest.approx(0.5, abs=0.05)


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
    ("failure", "at", "verdict", "why"),
    [
        (KeyboardInterrupt(), 3, "inconclusive", "interrupted"),
        # the symptom failing under the cut: the cut broke the work, never a fix
        (SymptomFailed("repro exited 1"), 3, "breaks", "the symptom failed under the cut"),
        # failing without the cut: the machine's problem; nothing is judged
        (SymptomFailed("repro exited 1"), 4, "inconclusive", "symptom failed without the cut"),
    ],
)
def test_interruption_reverts_and_reports_what_was_measured(
    failure: BaseException, at: int, verdict: str, why: str
) -> None:
    target = FakeTarget()
    c = make_cut()
    sym = FakeSymptom(target, c, fail_at=at, failure=failure)  # windows: w b c c b ...
    result = run_trial(target, [c], sym, FAST)
    assert result.verdict == verdict
    assert why in result.reason or why in (result.stopped or ""), result.reason
    assert target.mem == ORIGINAL
    assert target.events[-1] == ("revert", "f")
    assert [w.arm for w in result.windows] == ["warmup", "baseline", "cut", "cut"][:at]
    assert result.judgement is not None and result.judgement.cut.samples == tuple(
        result.values("cut")
    )


def test_target_gone_under_the_cut_breaks() -> None:
    target = FakeTarget(gone_after=2)
    c = make_cut()
    result = run_trial(target, [c], FakeSymptom(target, c), FAST)
    assert result.verdict == "breaks"
    assert "died" in result.reason and "reverted at once" in result.reason


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
    keys = ("verdict", "p_value", "effect", "baseline", "cut", "windows", "profile_diff")
    for key in (*keys, "explained", "explained_ci", "healthy", "breaks", "reason"):
        assert key in doc
    for arm in ("baseline", "cut"):
        assert set(doc[arm]) >= {"median", "ci", "samples"}
        assert len(doc[arm]["samples"]) == doc["look"]["n"]
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
    config = replace(FAST, profile=True)
    result = run_trial(target, [c], FakeSymptom(target, c), config)
    assert result.verdict == "gone"
    assert any("apt-get install linux-perf" in n and "symptom alone" in n for n in result.notes)
    assert result.profile_diff == [] and result.heat == ""


def test_a_metric_that_lags_the_windows_earns_a_warning(tmp_path: Path) -> None:
    """A rate file rewritten less often than a window is read the same in every run."""
    target = FakeTarget()
    rate = tmp_path / "rate"
    rate.write_text("7\n")
    config = replace(FAST, window=0.05, windows=6, healthy=None)
    result = run_trial(target, [make_cut()], Metric(f"cat {rate}"), config)
    assert any(
        "printed the same number in every run" in n and "--settle" in n for n in result.notes
    ), result.notes


def test_a_metric_read_that_once_prints_nothing_is_retried(tmp_path: Path) -> None:
    """A file read while being rewritten: one empty read is retried, the trial goes on."""
    target = FakeTarget()
    calls = tmp_path / "calls"
    script = tmp_path / "metric.sh"
    script.write_text(
        f"n=$(cat {calls} 2>/dev/null || echo 0); echo $((n+1)) > {calls}\n"
        '[ "$n" = 3 ] && exit 0\necho 5\n'
    )
    config = replace(FAST, window=0.0, windows=6, healthy=None)
    result = run_trial(target, [make_cut()], Metric(f"sh {script}"), config)
    assert result.stopped is None and not result.breaks, result.reason
    assert int(calls.read_text()) > len(result.windows)  # the empty read was run again


def test_settle_waits_after_each_switch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("knockout.trial.time.sleep", slept.append)
    target = FakeTarget()
    c = make_cut()
    result = run_trial(target, [c], FakeSymptom(target, c), replace(FAST, settle=0.05))
    arms = [w.arm for w in result.windows if w.arm != "warmup"]
    switches = 1 + sum(a != b for a, b in itertools.pairwise(arms))
    assert result.settle == 0.05 and slept == [0.05] * switches


class FakeKernel(FakeTarget):
    """A fake kernel target whose log reports an oops while the cut is in."""

    abilities = Abilities(detach=False, dead_man="none: a test", kernel_text=True)


def test_a_kernel_crash_under_the_cut_breaks_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    target = FakeKernel()
    c = make_cut()
    oops = "BUG: kernel NULL pointer dereference, address: 0000000000000100"

    class Log:
        problem = None

        def new_lines(self) -> list[str]:
            cut_in = target.mem[c.address : c.end] == c.new
            return [oops, "Call Trace:", "WARNING: later"] if cut_in else ["usb 1-1: new device"]

        def close(self) -> None:
            pass

    monkeypatch.setattr("knockout.trial.KernelLog", Log)
    result = run_trial(target, [c], FakeSymptom(target, c, effect=-0.9), FAST)
    assert result.verdict == "breaks"  # even though the symptom fell
    assert result.kernel_crash == oops
    assert result.as_dict()["kernel_crash"] == oops
    assert target.mem == bytearray(ORIGINAL)  # reverted at once
