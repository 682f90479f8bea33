"""A trial: measure a symptom with and without a cut, interleaved, until the verdict is clear.

The schedule is one warm-up window (no cut, discarded), then ABBA blocks:
baseline, cut, cut, baseline, baseline, cut, cut, baseline, ...  Interleaving
in ABBA order cancels a linear drift of the machine (a slowly filling cache,
a neighbour's job starting) between the arms.  The cut is applied before the
first cut window of a block and reverted after the second, through
:func:`knockout.targets.cut`, so it is reverted on every way out -- a normal
end, an error, Ctrl-C, SIGTERM.

After each complete block, if it is a planned look of the
:class:`~knockout.stats.Design`, the trial is judged and stops when the
verdict is ``gone`` or ``persists``.

Several cuts given together are one arm: all are applied for the cut
windows (in order) and reverted (in reverse order); the verdict is about
their joint effect.  To judge cuts separately, run a trial for each.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from knockout.cuts import Cut, Identity, describe_intent
from knockout.errors import BadInput, Refused, TargetGone
from knockout.measure.perf import Recorder, between
from knockout.measure.profile import HeatShift, Profile, describe_heat, heat_diff, merge
from knockout.measure.profile import profile_of as _profile_of
from knockout.measure.symptoms import ProfileSymptom, Symptom, SymptomFailed
from knockout.stats import Design, Judgement, Look, Verdict, judge, verdict_at_look
from knockout.targets import Target, cut, reverting_on_signals

__all__ = [
    "Arm",
    "TrialConfig",
    "TrialResult",
    "Window",
    "abba",
    "run_trial",
]

Arm = Literal["warmup", "baseline", "cut"]

#: fewer busy samples than this in an arm's profile earn a note that its shares are rough
MIN_PROFILE_SAMPLES = 50


@dataclass(frozen=True)
class TrialConfig:
    """How a trial is run and judged."""

    windows: int = 10  # at most this many windows per arm
    window: float = 5.0  # seconds per window
    alpha: float = 0.01
    min_effect: float = 0.10
    warmup: bool = True
    profile: bool = True  # record perf profiles to show where the heat moved
    perf_pid: int | None = None  # profile this process only (process targets)
    kallsyms: str | None = None  # kernel symbols for perf script (a guest's copy)

    def design(self, higher_is_better: bool) -> Design:
        """The statistical design of this trial."""
        return Design(
            alpha=self.alpha,
            min_effect=self.min_effect,
            max_per_arm=self.windows,
            higher_is_better=higher_is_better,
        )


@dataclass(frozen=True)
class Window:
    """One measured window."""

    index: int
    arm: Arm
    value: float
    start: float  # time.monotonic()
    end: float
    profile: Profile | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the profile as sample counts only)."""
        return {
            "index": self.index,
            "arm": self.arm,
            "value": self.value,
            "seconds": self.end - self.start,
            "samples": self.profile.busy if self.profile else None,
        }


@dataclass
class TrialResult:
    """What a trial measured and what it concluded (possibly after an interruption)."""

    cuts: list[Cut]
    symptom: str
    unit: str
    design: Design
    windows: list[Window] = field(default_factory=list)
    judgement: Judgement | None = None
    profile_diff: list[HeatShift] = field(default_factory=list)
    heat: str = ""
    stopped: str | None = None  # why the trial ended early, if it did
    notes: list[str] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    seconds: float = 0.0
    baseline_profile: Profile | None = None
    cut_profile: Profile | None = None

    def values(self, arm: Arm) -> list[float]:
        """The window values of one arm, in order."""
        return [w.value for w in self.windows if w.arm == arm]

    @property
    def verdict(self) -> str:
        """``gone``, ``persists`` or ``inconclusive``."""
        return self.judgement.verdict if self.judgement else "inconclusive"

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        j = self.judgement.as_dict() if self.judgement else {}
        return {
            **j,
            "verdict": self.verdict,
            "symptom": self.symptom,
            "unit": self.unit,
            "cuts": [_cut_dict(c) for c in self.cuts],
            "mechanisms": self.mechanisms,
            "windows": [w.as_dict() for w in self.windows],
            "windows_per_arm": {
                "baseline": len(self.values("baseline")),
                "cut": len(self.values("cut")),
            },
            "profile_diff": [h.as_dict() for h in self.profile_diff],
            "heat": self.heat,
            "profiles": {
                "baseline": self.baseline_profile.as_dict() if self.baseline_profile else None,
                "cut": self.cut_profile.as_dict() if self.cut_profile else None,
            },
            "stopped": self.stopped,
            "notes": self.notes,
            "seconds": self.seconds,
        }


def _cut_dict(c: Cut) -> dict[str, Any]:
    return {
        "target": c.target,
        "location": c.location,
        "address": f"{c.address:#x}",
        "intent": describe_intent(c.intent),
        "old": c.old.hex(),
        "new": c.new.hex(),
    }


def abba(per_arm: int) -> Iterator[Arm]:
    """The arms of the measured windows: ABBA blocks, ``per_arm`` windows each arm."""
    done = 0
    while done < per_arm:
        block: tuple[Arm, ...] = ("baseline", "cut", "cut", "baseline")
        if per_arm - done == 1:
            block = ("baseline", "cut")
        yield from block
        done += len(block) // 2


#: called after every window with the window and, at a planned look, the look and verdict
Progress = Callable[[Window, tuple[Look, Verdict] | None], None]


class _Profiler:
    """The trial's perf recording, or nothing (with the reason kept as a note).

    Each window's part of the recording is cut off at the window's end; it
    is read (``perf script``, slow in a TCG guest) only after the trial,
    unless the symptom itself needs the profile (``eager``).
    """

    def __init__(
        self, config: TrialConfig, workdir: Path, notes: list[str], *, eager: bool
    ) -> None:
        self.recorder: Recorder | None = None
        self.eager = eager
        self.pending: dict[int, tuple[Path, float, float]] = {}
        if not config.profile:
            return
        rec = Recorder(workdir, pid=config.perf_pid, kallsyms=config.kallsyms)
        try:
            rec.start()
        except Refused as exc:
            notes.append(f"{exc}; the trial goes on with the symptom alone")
            return
        self.recorder = rec

    def window(self, index: int, start: float, end: float) -> Profile | None:
        """Cut the window off the recording; its profile now if eager, else later."""
        if self.recorder is None:
            return None
        data = self.recorder.rotate()
        if data is None:
            return None
        if self.eager:
            return _profile_of(between(self.recorder.script(data), start, end))
        self.pending[index] = (data, start, end)
        return None

    def collect(self, windows: list[Window]) -> list[Window]:
        """``windows`` with the profiles read from the pending parts of the recording."""
        if self.recorder is None:
            return windows
        out = []
        for w in windows:
            pending = self.pending.pop(w.index, None)
            if pending is not None:
                data, start, end = pending
                w = replace(w, profile=_profile_of(between(self.recorder.script(data), start, end)))
            out.append(w)
        return out

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()


class _Arms:
    """Applies and reverts the cuts as the schedule moves between arms."""

    def __init__(self, target: Target, cuts: Sequence[Cut], mechanisms: list[str]) -> None:
        self.target = target
        self.cuts = cuts
        self.mechanisms = mechanisms
        self.stack: contextlib.ExitStack | None = None

    def enter(self, arm: Arm) -> None:
        want_cut = arm == "cut"
        if want_cut and self.stack is None:
            stack = contextlib.ExitStack()
            try:
                for c in self.cuts:
                    applied = stack.enter_context(cut(self.target, c))
                    if applied.mechanism not in self.mechanisms:
                        self.mechanisms.append(applied.mechanism)
            except BaseException:
                stack.close()
                raise
            self.stack = stack
        elif not want_cut and self.stack is not None:
            self.close()

    def close(self) -> None:
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.close()


def _measure(symptom: Symptom, seconds: float, profiler: _Profiler, index: int, arm: Arm) -> Window:
    start = time.monotonic()
    value = symptom.measure(seconds)
    end = time.monotonic()
    profile = profiler.window(index, start, end)
    if isinstance(symptom, ProfileSymptom):
        if profile is None:
            raise SymptomFailed(f"{symptom.name} needs perf profiles and there are none")
        value = symptom.from_profile(profile)
    return Window(index, arm, value, start, end, profile)


def run_trial(
    target: Target,
    cuts: Sequence[Cut],
    symptom: Symptom,
    config: TrialConfig | None = None,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
) -> TrialResult:
    """Run a trial of ``cuts`` (applied together) on ``target``, judged on ``symptom``.

    Returns the result even when the trial ends early: Ctrl-C, the target
    exiting, or the symptom failing with the cut in place (``stopped`` says
    which); the cuts are reverted in every case.
    """
    config = config or TrialConfig()
    if not cuts:
        raise BadInput("a trial needs at least one cut; name a SPEC and an intent")
    design = config.design(symptom.higher_is_better)
    design.looks  # noqa: B018 -- refuse an impossible design before touching anything
    result = TrialResult(list(cuts), symptom.name, symptom.unit, design)
    if isinstance(symptom, ProfileSymptom):
        result.notes.append(
            f"{symptom.name} judges a profile share: cutting a hot leaf often only moves the "
            "heat; prefer an end symptom (sys, load, cmd:, metric:)"
        )
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="knockout-trial-") as tmp:
        eager = isinstance(symptom, ProfileSymptom)
        profiler = _Profiler(config, workdir or Path(tmp), result.notes, eager=eager)
        if isinstance(symptom, ProfileSymptom) and profiler.recorder is None:
            raise BadInput(f"{symptom.name} needs perf: {' '.join(result.notes[-1:])}")
        arms = _Arms(target, cuts, result.mechanisms)
        try:
            with reverting_on_signals():
                _loop(result, symptom, config, arms, profiler, progress)
        except KeyboardInterrupt:
            result.stopped = "interrupted; the cut was reverted"
        except SymptomFailed as exc:
            result.stopped = f"symptom failed ({exc}); the cut was reverted"
        except TargetGone as exc:
            result.stopped = f"target gone ({exc})"
        finally:
            with contextlib.suppress(TargetGone):
                arms.close()
            try:
                result.windows = profiler.collect(result.windows)
            finally:
                profiler.stop()
    result.seconds = time.monotonic() - began
    _conclude(result)
    return result


def _loop(
    result: TrialResult,
    symptom: Symptom,
    config: TrialConfig,
    arms: _Arms,
    profiler: _Profiler,
    progress: Progress | None,
) -> None:
    index = 0
    if config.warmup:
        w = _measure(symptom, config.window, profiler, index, "warmup")
        result.windows.append(w)
        if progress:
            progress(w, None)
        index += 1
    for arm in abba(config.windows):
        arms.enter(arm)
        w = _measure(symptom, config.window, profiler, index, arm)
        result.windows.append(w)
        index += 1
        at_look = verdict_at_look(result.values("baseline"), result.values("cut"), result.design)
        if progress:
            progress(w, at_look)
        if at_look is not None and at_look[1] != "inconclusive":
            arms.enter("baseline")
            return
    arms.enter("baseline")


def _conclude(result: TrialResult) -> None:
    """Final judgement, the A/A guard, and where the heat moved."""
    j = judge(result.values("baseline"), result.values("cut"), result.design)
    if j.verdict == "gone" and all(isinstance(c.intent, Identity) for c in result.cuts):
        # An A/A cut changes nothing: a difference is the machine's drift or noise.
        j = replace(j, verdict="inconclusive", reason="A/A trial found a difference: " + j.reason)
        result.notes.append(
            "an A/A cut cannot change the symptom; the machine drifted or is too noisy for "
            "this window length: quiet it, lengthen --window, or raise --min-effect"
        )
    result.judgement = j
    base = [w.profile for w in result.windows if w.arm == "baseline" and w.profile]
    cutp = [w.profile for w in result.windows if w.arm == "cut" and w.profile]
    if base and cutp:
        result.baseline_profile, result.cut_profile = merge(base), merge(cutp)
        few = min(result.baseline_profile.busy, result.cut_profile.busy)
        if few < MIN_PROFILE_SAMPLES:
            result.notes.append(
                f"only {few} busy perf samples in one arm: the profile shares are rough "
                "(the cut may have removed most of the work; lengthen --window for more)"
            )
        result.profile_diff = heat_diff(result.baseline_profile, result.cut_profile)
        busy = (result.baseline_profile.busy, result.cut_profile.busy)
        result.heat = describe_heat(result.profile_diff, j.verdict, busy=busy)
    if any(math.isnan(v) for v in result.values("baseline") + result.values("cut")):
        result.notes.append("some windows have no value (NaN); check the symptom command")
