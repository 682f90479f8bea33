"""A trial: measure a symptom with and without a cut, interleaved, until the verdict is clear.

The schedule is one warm-up window (no cut, discarded), then ABBA blocks:
baseline, cut, cut, baseline, baseline, cut, cut, baseline, ...  Interleaving
in ABBA order cancels a linear drift of the machine (a slowly filling cache,
a neighbour's job starting) between the arms.  The cut is applied before the
first cut window of a block and reverted after the second, through
:func:`knockout.targets.cut`, so it is reverted on every way out -- a normal
end, an error, Ctrl-C, SIGTERM.

Measurement starts ``settle`` seconds after each switch between the arms
(a metric that lags, a cache that refills), and after each window the
trial is judged at the :class:`~knockout.stats.Design`'s planned looks; it
stops at the first look that decides (``gone``, ``reduced``, ``persists``).

A cut that stops the work is not a fix: after every window the guards
(:mod:`knockout.measure.guards`) report what went wrong since the last one --
the target died, the kernel logged an oops or a warning, OOM kills in a
cgroup, a ``--guard`` command failed, the symptom itself failed -- and the
``--work`` metric (the rate of useful work) must not fall under the cut.
Evidence in a cut window makes the verdict ``breaks``: the cut is reverted
at once and the trial stops.  Evidence in a baseline window means the
machine broke without the cut: the trial stops undecided.  A cut that was
not in place for a whole window (:meth:`~knockout.targets.Target.in_place`)
voids the trial: :class:`~knockout.errors.CutLost`, no verdict.

Several cuts given together are one arm: all are applied for the cut
windows (in order) and reverted (in reverse order); the verdict is about
their joint effect.  To judge cuts separately, run a trial for each.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from knockout.changes import AppliedWrite, Write
from knockout.changes import applied as applied_write
from knockout.changes import in_place as write_in_place
from knockout.cuts import Cut, Identity, describe_intent
from knockout.errors import BadInput, CutLost, Refused, TargetGone
from knockout.measure.guards import (
    CgroupOoms,
    GuardCommand,
    KernelLog,
    fault_of,
    kernel_crash,
    kernel_problems,
    oom_reports,
)
from knockout.measure.perf import Recorder, between
from knockout.measure.profile import HeatShift, Profile, describe_heat, heat_diff, merge
from knockout.measure.profile import profile_of as _profile_of
from knockout.measure.symptoms import (
    CommandTime,
    Metric,
    ProfileSymptom,
    Symptom,
    SymptomFailed,
    parse_symptom,
)
from knockout.stats import DEFAULT_WINDOWS, Design, Judgement, Look, Verdict, judge, verdict_at_look
from knockout.targets import AppliedCut, Target, cut, reverting_on_signals

__all__ = [
    "Arm",
    "TrialConfig",
    "TrialResult",
    "Window",
    "abba",
    "crashed_kernel",
    "run_trial",
]

Arm = Literal["warmup", "baseline", "cut"]

#: fewer busy samples than this in an arm's profile earn a note that its shares are rough
MIN_PROFILE_SAMPLES = 50


@dataclass(frozen=True)
class TrialConfig:
    """How a trial is run and judged."""

    windows: int = DEFAULT_WINDOWS  # at most this many windows per arm
    window: float = 5.0  # seconds per window
    alpha: float = 0.01
    min_effect: float = 0.10
    warmup: bool = True
    profile: bool = True  # record perf profiles to show where the heat moved
    perf_pid: int | None = None  # profile this process only (process targets)
    kallsyms: str | None = None  # kernel symbols for perf script (a guest's copy)
    healthy: float | None = None  # the symptom's healthy level (None: its zero)
    gone_at: float = 0.8  # the explained share that makes a cut ``gone``
    #: seconds to wait after each switch between arms before measuring (None: the default)
    settle: float | None = None
    guards: tuple[str, ...] = ()  # commands that must keep exiting 0
    cgroup: str | None = None  # a cgroup whose OOM kills mean the cut broke the work
    work: str | None = None  # ``metric:CMD``: the rate of useful work (higher is better)

    def design(self, higher_is_better: bool, unit: str = "") -> Design:
        """The statistical design of this trial."""
        return Design(
            alpha=self.alpha,
            min_effect=self.min_effect,
            max_per_arm=self.windows,
            higher_is_better=higher_is_better,
            healthy=self.healthy,
            gone_at=self.gone_at,
            unit=unit,
        )

    @property
    def settle_seconds(self) -> float:
        """:attr:`settle`, or by default a fifth of a window, at most 1 s."""
        if self.settle is not None:
            return self.settle
        return min(1.0, 0.2 * self.window)


@dataclass(frozen=True)
class Window:
    """One measured window."""

    index: int
    arm: Arm
    value: float
    start: float  # time.monotonic()
    end: float
    profile: Profile | None = None
    work: float | None = None  # the --work metric in the window

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the profile as sample counts only)."""
        return {
            "index": self.index,
            "arm": self.arm,
            "value": self.value,
            "work": self.work,
            "start": self.start,
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
    #: the evidence that the cut stopped the work (the verdict is then ``breaks``)
    breaks: list[str] = field(default_factory=list)
    #: the kernel log line saying kernel code crashed during the trial (an oops): the
    #: kernel may be left inconsistent, so nothing measured on it after can be trusted
    kernel_crash: str | None = None
    settle: float = 0.0
    work: str | None = None
    writes: list[Write] = field(default_factory=list)

    @property
    def aa(self) -> bool:
        """An A/A trial: only identity cuts, no write (nothing can change)."""
        return (
            bool(self.cuts)
            and not self.writes
            and all(isinstance(c.intent, Identity) for c in self.cuts)
        )

    def values(self, arm: Arm) -> list[float]:
        """The window values of one arm, in order."""
        return [w.value for w in self.windows if w.arm == arm]

    def work_values(self, arm: Arm) -> list[float]:
        """The ``--work`` values of one arm's windows, in order."""
        return [w.work for w in self.windows if w.arm == arm and w.work is not None]

    @property
    def verdict(self) -> str:
        """``gone``, ``reduced``, ``persists``, ``inconclusive`` or ``breaks``."""
        if self.breaks:
            return "breaks"
        return self.judgement.verdict if self.judgement else "inconclusive"

    @property
    def reason(self) -> str:
        """One line: why the verdict is what it is."""
        if self.breaks:
            return f"{'; '.join(self.breaks)} (the cut was reverted at once)"
        return self.judgement.reason if self.judgement else (self.stopped or "not judged")

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        j = self.judgement.as_dict() if self.judgement else {}
        return {
            **j,
            "verdict": self.verdict,
            "reason": self.reason,
            "breaks": self.breaks,
            "kernel_crash": self.kernel_crash,
            "settle": self.settle,
            "work": self.work,
            "symptom": self.symptom,
            "unit": self.unit,
            "cuts": [_cut_dict(c) for c in self.cuts],
            "writes": [{"path": str(w.path), "value": w.value} for w in self.writes],
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
    """Applies and reverts the cuts (and writes) as the schedule moves between arms."""

    def __init__(
        self,
        target: Target,
        cuts: Sequence[Cut],
        mechanisms: list[str],
        writes: Sequence[Write] = (),
    ) -> None:
        self.target = target
        self.cuts = cuts
        self.writes = writes
        self.mechanisms = mechanisms
        self.stack: contextlib.ExitStack | None = None
        self.applied: list[AppliedCut] = []
        self.written: list[AppliedWrite] = []

    def enter(self, arm: Arm) -> None:
        want_cut = arm == "cut"
        if want_cut and self.stack is None:
            stack = contextlib.ExitStack()
            try:
                for c in self.cuts:
                    applied = stack.enter_context(cut(self.target, c))
                    self.applied.append(applied)
                    if applied.mechanism not in self.mechanisms:
                        self.mechanisms.append(applied.mechanism)
                for w in self.writes:
                    self.written.append(stack.enter_context(applied_write(w)))
                    if "write" not in self.mechanisms:
                        self.mechanisms.append("write")
            except BaseException:
                self.applied.clear()
                self.written.clear()
                stack.close()
                raise
            self.stack = stack
        elif not want_cut and self.stack is not None:
            self.close()

    def prove(self) -> None:
        """CutLost unless every cut of the arm is still in place as it was written."""
        for applied in self.applied:
            why = self.target.in_place(applied)
            if why is not None:
                raise CutLost(f"{why}; the window measured with it is void, so no verdict")
        for held in self.written:
            why = write_in_place(held)
            if why is not None:
                raise CutLost(f"{why}; the window measured with it is void, so no verdict")

    def close(self) -> None:
        stack, self.stack = self.stack, None
        self.applied.clear()
        self.written.clear()
        if stack is not None:
            stack.close()


class _Broke(Exception):
    """Evidence that the cut stopped the work (internal: becomes ``TrialResult.breaks``)."""

    def __init__(self, evidence: list[str]) -> None:
        super().__init__("; ".join(evidence))
        self.evidence = evidence


class _Watch:
    """The guards of one trial: what went wrong since the last window, as evidence lines."""

    def __init__(self, target: Target, config: TrialConfig, notes: list[str]) -> None:
        self.target = target
        self.kernel_text = target.abilities.kernel_text
        self.pid = target.pid
        self.log = KernelLog()
        if self.log.problem and (self.kernel_text or self.pid is not None):
            notes.append(self.log.problem)
        self.ooms = CgroupOoms(config.cgroup) if config.cgroup else None
        self.commands = [GuardCommand(c) for c in config.guards]
        self.crash: str | None = None  # the first line saying kernel code crashed

    def evidence(self) -> list[str]:
        """What happened since the last call: the target's death, kernel problems, OOMs, guards."""
        lines = self.log.new_lines()
        out: list[str] = []
        if not self.target.alive():
            fault = fault_of(lines, self.pid) if self.pid is not None else None
            out.append(f"{self.target.description} died" + (f": {fault}" if fault else ""))
        if self.kernel_text:
            self.crash = self.crash or kernel_crash(lines)
            problems = kernel_problems(lines)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                out.append(f"the kernel logged '{problems[0].strip()}'{more}")
        found = self.ooms.check() if self.ooms is not None else None
        if found:
            out.append(found)
        elif self.kernel_text and oom_reports(lines):
            out.append(f"the kernel's OOM killer ran: '{oom_reports(lines)[0].strip()}'")
        if out and not self.target.alive():
            return out  # guard commands would only fail for the same reason
        out += [e for e in (g.check() for g in self.commands) if e]
        return out

    def close(self) -> None:
        self.log.close()


def _measure_window(
    symptom: Symptom, work: Symptom | None, seconds: float
) -> tuple[float, float | None]:
    """The symptom's value of one window and, measured alongside, the work rate."""
    if work is None:
        return symptom.measure(seconds), None
    done: list[float] = []
    failed: list[SymptomFailed] = []

    def measure_work() -> None:
        try:
            done.append(work.measure(seconds))
        except SymptomFailed as exc:
            failed.append(exc)

    thread = threading.Thread(target=measure_work, name="knockout-work", daemon=True)
    thread.start()
    try:
        value = symptom.measure(seconds)
    finally:
        thread.join()
    if failed:
        raise _WorkFailed(str(failed[0]))
    return value, done[0]


class _WorkFailed(SymptomFailed):
    """The ``--work`` metric failed in a window."""


def _measure(
    symptom: Symptom,
    work: Symptom | None,
    seconds: float,
    profiler: _Profiler,
    index: int,
    arm: Arm,
) -> Window:
    start = time.monotonic()
    value, done = _measure_window(symptom, work, seconds)
    end = time.monotonic()
    profile = profiler.window(index, start, end)
    if isinstance(symptom, ProfileSymptom):
        if profile is None:
            raise SymptomFailed(f"{symptom.name} needs perf profiles and there are none")
        value = symptom.from_profile(profile)
    return Window(index, arm, value, start, end, profile, done)


#: a cut window whose work rate is below this fraction of the baseline's stalled the work
STALLED = 0.1


def work_fell(
    baseline: Sequence[float], cut: Sequence[float], min_effect: float, alpha: float
) -> str | None:
    """Evidence that the work rate fell under the cut by more than ``min_effect``, or None.

    A cut window below :data:`STALLED` of the baseline's median stalled the
    work; otherwise the fall must be shown: a one-sided Mann--Whitney test
    of the cut windows against the baseline scaled by ``1 - min_effect``, at
    ``alpha``.

    >>> work_fell([100, 98, 101], [3], 0.1, 0.01)
    'the work stalled under the cut: 3 against 100 without it'
    >>> work_fell([100, 98, 101, 99], [97, 99, 100, 98], 0.1, 0.01) is None
    True
    """
    if not baseline or not cut:
        return None
    base = statistics.median(baseline)
    if cut[-1] <= STALLED * base:
        return f"the work stalled under the cut: {cut[-1]:.4g} against {base:.4g} without it"
    if len(cut) < 2 or len(baseline) < 2:
        return None
    from scipy.stats import mannwhitneyu

    scaled = [(1 - min_effect) * b for b in baseline]
    p = float(mannwhitneyu(cut, scaled, alternative="less").pvalue)
    if p > alpha:
        return None
    fall = 1 - statistics.median(cut) / base
    return f"the work rate fell {fall:.0%} under the cut (p={p:.2g} <= {alpha:g})"


def run_trial(
    target: Target,
    cuts: Sequence[Cut],
    symptom: Symptom,
    config: TrialConfig | None = None,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
    writes: Sequence[Write] = (),
) -> TrialResult:
    """Run a trial of ``cuts`` (applied together) on ``target``, judged on ``symptom``.

    ``writes`` (reversible file writes, :mod:`knockout.changes`) are part of
    the cut arm too: a remedy is judged like a cut, with or without cuts.

    Returns the result even when the trial ends early: the cut broke the
    work (``breaks``, with the evidence), Ctrl-C, the target exiting or the
    symptom failing outside a cut window (``stopped`` says which); the cuts
    are reverted and perf is stopped in every case.  Raises
    :class:`~knockout.errors.CutLost` (after reverting) when a cut was not in
    place at the end of a cut window: that window measured nothing, and no
    verdict is given.
    """
    config = config or TrialConfig()
    if not cuts and not writes:
        raise BadInput("a trial needs a cut or a write; name a SPEC and an intent, or --write")
    design = config.design(symptom.higher_is_better, symptom.unit)
    design.looks  # noqa: B018 -- refuse an impossible design before touching anything
    work = _work_metric(config.work)
    result = TrialResult(list(cuts), symptom.name, symptom.unit, design, writes=list(writes))
    result.settle, result.work = config.settle_seconds, work.name if work else None
    if isinstance(symptom, ProfileSymptom):
        result.notes.append(
            f"{symptom.name} judges a profile share: cutting a hot leaf often only moves the "
            "heat; prefer an end symptom (sys, load, cmd:, metric:)"
        )
    watch = _Watch(target, config, result.notes)
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="knockout-trial-") as tmp:
            eager = isinstance(symptom, ProfileSymptom)
            profiler = _Profiler(config, workdir or Path(tmp), result.notes, eager=eager)
            try:
                if isinstance(symptom, ProfileSymptom) and profiler.recorder is None:
                    raise BadInput(f"{symptom.name} needs perf: {' '.join(result.notes[-1:])}")
                run = _Run(result, symptom, work, config, profiler, watch, progress)
                run.arms(_Arms(target, cuts, result.mechanisms, writes))
                result.windows = profiler.collect(result.windows)
            finally:
                profiler.stop()
    finally:
        watch.close()
    result.kernel_crash = watch.crash
    result.seconds = time.monotonic() - began
    _conclude(result)
    return result


def _work_metric(spelling: str | None) -> Symptom | None:
    """The ``--work`` metric: ``metric:CMD``, higher is better."""
    if spelling is None:
        return None
    if not spelling.strip().startswith("metric:"):
        raise BadInput(
            f"--work takes metric:'COMMAND' (a rate of useful work, higher is better); "
            f"got {spelling!r}"
        )
    return parse_symptom(spelling, higher_is_better=True)


@dataclass
class _Run:
    """One trial's schedule: windows, settling, proofs, guards and looks."""

    result: TrialResult
    symptom: Symptom
    work: Symptom | None
    config: TrialConfig
    profiler: _Profiler
    watch: _Watch
    progress: Progress | None
    index: int = 0
    warned_unchanged: bool = False

    def arms(self, arms: _Arms) -> None:
        """The schedule, with the cuts reverted on every way out; why it stopped early, if so."""
        result = self.result
        try:
            with reverting_on_signals():
                self._loop(arms)
        except _Broke as broke:
            if result.aa:
                result.stopped = (
                    f"an A/A cut cannot break anything, yet: {broke}; the machine is unstable "
                    "(the trial stopped, nothing is judged)"
                )
            else:
                result.breaks = broke.evidence
        except KeyboardInterrupt:
            result.stopped = "interrupted; the cut was reverted"
        except SymptomFailed as exc:
            result.stopped = f"symptom failed without the cut ({exc}); nothing to judge"
        except TargetGone as exc:
            result.stopped = f"target gone without the cut ({exc})"
        finally:
            with contextlib.suppress(TargetGone):
                arms.close()

    def _window(self, arm: Arm) -> Window:
        w = _measure(self.symptom, self.work, self.config.window, self.profiler, self.index, arm)
        self.index += 1
        self._note_lagging()
        return w

    def _note_lagging(self) -> None:
        symptom = self.symptom
        if self.warned_unchanged or not isinstance(symptom, Metric | CommandTime):
            return
        if isinstance(symptom, Metric) and symptom.runs.unchanged:
            self.warned_unchanged = True
            self.result.notes.append(
                f"{symptom.name} printed the same number in every run of a window: it may "
                "update less often than the window (a rate file rewritten every second?); "
                "lengthen --window and --settle past its update period"
            )

    def _loop(self, arms: _Arms) -> None:
        result, config = self.result, self.config
        if config.warmup:
            w = self._window("warmup")
            result.windows.append(w)
            if self.progress:
                self.progress(w, None)
        previous: Arm | None = None
        for arm in abba(config.windows):
            if arm == "cut":
                self._enter_cut(arms)
            else:
                arms.enter(arm)
            if arm != previous and result.settle > 0:
                time.sleep(result.settle)
            previous = arm
            w = self._measured(arms, arm)
            result.windows.append(w)
            if arm == "cut" and w.work is not None:
                fell = work_fell(
                    result.work_values("baseline"),
                    result.work_values("cut"),
                    config.min_effect,
                    config.alpha,
                )
                if fell:
                    raise _Broke([fell])
            at_look = verdict_at_look(
                result.values("baseline"), result.values("cut"), result.design
            )
            if self.progress:
                self.progress(w, at_look)
            if at_look is not None and at_look[1] != "inconclusive":
                break
        arms.enter("baseline")

    def _enter_cut(self, arms: _Arms) -> None:
        try:
            arms.enter("cut")
        except TargetGone as exc:
            raise _Broke([f"the target died as the cut was applied ({exc})"]) from None

    def _measured(self, arms: _Arms, arm: Arm) -> Window:
        """One window, then the proof that the cut held and the guards' evidence."""
        try:
            w = self._window(arm)
        except (SymptomFailed, TargetGone) as exc:
            if arm != "cut":
                raise
            raise _Broke(
                self.watch.evidence() or [f"the symptom failed under the cut: {exc}"]
            ) from None
        evidence = self.watch.evidence()  # a target that died under the cut broke, first
        if evidence and arm == "cut":
            raise _Broke(evidence)
        if arm == "cut":
            arms.prove()
        if evidence:
            raise SymptomFailed(f"the target broke in a {arm} window: {'; '.join(evidence)}")
        return w


def _conclude(result: TrialResult) -> None:
    """Final judgement, the A/A guard, and where the heat moved."""
    j = judge(result.values("baseline"), result.values("cut"), result.design)
    if result.aa and j.verdict in ("gone", "reduced"):
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
        result.heat = describe_heat(result.profile_diff, result.verdict, busy=busy)


def crashed_kernel(what: str, line: str) -> str:
    """Why a search stops after a cut of ``what`` crashed kernel code (``line`` from its log)."""
    return (
        f"cutting {what} crashed kernel code ('{line}'): the task that crashed may have died "
        "holding locks, so no later measurement on this kernel can be trusted; reboot it, "
        "and deny that cut (--deny) before searching again"
    )
