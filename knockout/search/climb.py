"""Climb the hot stack: cut frames from the leaf towards the root until the symptom goes.

The seed's engineer cut the hot leaf and the heat only moved: the cost was
made upstream, by how often reclaim ran and how much each pass walked.  The
climb does that search by itself:

1. profile the target and take the hot path (:func:`knockout.search.hotpath.hot_path`);
2. optionally count calls on it (calls/s of each frame, calls of the frame
   below per call of this one: the **cost split**, in windows of their own);
3. for each frame from the leaf up: cut it -- at its entry, or at the call
   site in its caller when the frame is shared (most of its time comes
   through other callers: cutting ``mem_cgroup_iter`` everywhere is not the
   question, cutting the call from the reclaim loop is) -- and judge the cut
   with a trial on the end symptom;
4. the **culprit** is the lowest frame whose cut is ``gone`` (and does not
   break the work).  When none is, the answer is the cost split below the
   frames that break: how often the work runs and how much each run does.

Every frame's line says what was cut, the verdict, the explained share and
where the heat moved.  Deny rules (:mod:`knockout.search.deny`) refuse
frames whose cut would deadlock or crash; a refused frame is reported with
its rule.
"""

from __future__ import annotations

import functools
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from knockout.callsites import call_site
from knockout.cuts import Cut, Intent, Return, SkipCall, describe_intent
from knockout.errors import KnockoutError, TargetGone
from knockout.listing import Disassembler
from knockout.measure.perf import Recorder, Sample
from knockout.measure.profile import Profile, profile_of
from knockout.measure.symptoms import Symptom
from knockout.plan import plan_at
from knockout.search.deny import DenyRules
from knockout.search.hotpath import HotFrame, hot_path
from knockout.targets import Target
from knockout.trial import TrialConfig, TrialResult, crashed_kernel, run_trial

__all__ = [
    "ClimbConfig",
    "ClimbResult",
    "CostSplit",
    "FrameResult",
    "climb",
    "kernel_frames",
    "process_frames",
]

#: a frame is cut at its call site when less than this share of its time comes via the path
SHARED_BELOW = 0.9
#: the climb stops after this many frames in a row whose cut breaks the work
BREAKS_IN_A_ROW = 2


class CostSplit(Protocol):
    """Counts calls on the hot path (in windows of its own): see :mod:`knockout.measure.calls`."""

    def __call__(
        self, target: Target, frames: Sequence[HotFrame], seconds: float
    ) -> list[dict[str, Any]]:
        """Per frame (same order): ``calls_per_s``, ``fanout`` ({callee: calls per call}),
        ``overhead_ns`` or a ``note`` saying why it could not count."""
        ...


@dataclass(frozen=True)
class ClimbConfig:
    """How a climb runs: the profile, the frames, and the trials that judge each cut."""

    trial: TrialConfig = field(default_factory=TrialConfig)
    profile_seconds: float = 5.0
    max_frames: int = 8
    #: the value an entry cut returns (None: 0, or the DWARF return type's zero)
    return_value: int | None = None
    kallsyms: str | None = None
    #: count calls on the hot path (uprobes/kprobes, in windows of their own) for the cost split
    count: bool = True
    count_seconds: float = 2.0
    #: the counting window goes on (up to ``count_max_seconds``) until every hot frame was
    #: entered this often: a frame entered once per long pass says nothing from one call
    count_min_calls: int = 3
    count_max_seconds: float = 10.0


@dataclass
class FrameResult:
    """What the climb did with one frame of the hot path."""

    frame: HotFrame
    cut: Cut | None = None
    via: str = "entry"  # or "call site in CALLER"
    refused: str | None = None
    trial: TrialResult | None = None
    mechanism: str | None = None
    calls_per_s: float | None = None
    cost_per_call_s: float | None = None
    fanout: dict[str, float] = field(default_factory=dict)
    count_note: str | None = None

    @property
    def verdict(self) -> str | None:
        return self.trial.verdict if self.trial else None

    @property
    def explained(self) -> float | None:
        j = self.trial.judgement if self.trial else None
        if j is None or j.explained != j.explained:
            return None
        return j.explained

    def heat_moved_to(self) -> list[str]:
        """The symbols whose share of the profile grew under the cut (significantly)."""
        if self.trial is None:
            return []
        return [h.symbol for h in self.trial.profile_diff if h.delta > 0.02]

    def line(self) -> str:
        """One line for people: what was cut, the verdict and share, where the heat moved."""
        name = self.frame.symbol
        if self.refused:
            return f"{name}: {self.refused}"
        if self.cut is None or self.trial is None:
            return f"{name}: not cut"
        share = f", explained {self.explained:.0%}" if self.explained is not None else ""
        moved = self.heat_moved_to()
        heat = f"; heat moved to {', '.join(moved[:3])}" if moved else ""
        how = f"{self.cut.location} {describe_intent(self.cut.intent)}"
        return f"{name}: {how} ({self.via}) -> {self.verdict}{share}{heat}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the schema the report reads)."""
        j = self.trial.judgement if self.trial else None
        return {
            "symbol": self.frame.symbol,
            "depth": self.frame.depth,
            "path_share": self.frame.path_share,
            "total": self.frame.total,
            "self": self.frame.self_share,
            "cut": None
            if self.cut is None
            else {
                "location": self.cut.location,
                "intent": describe_intent(self.cut.intent),
                "address": f"{self.cut.address:#x}",
                "old": self.cut.old.hex(),
                "new": self.cut.new.hex(),
                "mechanism": self.mechanism,
                "via": self.via,
            },
            "refused": self.refused,
            "verdict": self.verdict,
            "explained": self.explained,
            "explained_ci": list(j.explained_ci) if j and j.explained_ci else None,
            "heat_moved_to": self.heat_moved_to(),
            "calls_per_s": self.calls_per_s,
            "cost_per_call_s": self.cost_per_call_s,
            "fanout": self.fanout,
            "count_note": self.count_note,
            "line": self.line(),
            "trial": self.trial.as_dict() if self.trial else None,
        }


@dataclass
class ClimbResult:
    """A climb's frames from the leaf up, its culprit (or none) and what that means."""

    target: str
    symptom: str
    unit: str
    healthy: float | None
    stack: list[HotFrame]
    frames: list[FrameResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None
    #: the frame at which the climb stopped early (a crash, the symptom gone from the baseline)
    stopped_at: str | None = None
    #: the hot path has frames above the last one judged (``max_frames``)
    truncated: bool = False

    @property
    def culprit(self) -> FrameResult | None:
        """The lowest frame whose cut is ``gone``."""
        return next((f for f in self.frames if f.verdict == "gone"), None)

    def conclusion(self) -> str:
        """One sentence, computed from what was measured."""
        culprit = self.culprit
        judged = [f for f in self.frames if f.trial is not None]
        if not judged:
            return f"no frame of the hot path could be cut ({'; '.join(self._refusals())})"
        if self.stopped_at is not None and self.stopped is not None:
            return f"the climb stopped at {self.stopped_at}: {self.stopped}"
        if culprit is not None:
            below = [f for f in judged if f.frame.depth < culprit.frame.depth]
            moved = sorted({s for f in below for s in f.heat_moved_to()})
            tail = (
                f"; cutting the frames below only moved the heat (to {', '.join(moved[:3])})"
                if moved
                else ""
            )
            share = f"{culprit.explained:.0%}" if culprit.explained is not None else "all"
            return (
                f"{culprit.frame.symbol} is where the cost is made: cutting it "
                f"({culprit.via}) removes {share} of {self.symptom}'s excess over healthy{tail}"
            )
        counted = [f for f in self.frames if f.calls_per_s is not None]
        verdicts = ", ".join(f"{f.frame.symbol} {f.verdict}" for f in judged)
        if self.truncated and not any(f.verdict == "breaks" for f in judged):
            return (
                f"none of the {len(self.frames)} lowest frames' cuts brings {self.symptom} back "
                f"to healthy ({verdicts}); the hot path goes higher: raise --max-frames"
            )
        sentence = (
            f"no frame's cut brings {self.symptom} back to healthy without breaking the work "
            f"({verdicts})"
        )
        return sentence + _upstream(counted)

    def _refusals(self) -> list[str]:
        return [f.refused for f in self.frames if f.refused]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (see the report's schema)."""
        culprit = self.culprit
        return {
            "kind": "climb",
            "target": self.target,
            "symptom": self.symptom,
            "unit": self.unit,
            "healthy": self.healthy,
            "healthy_source": "zero" if self.healthy is None else "--healthy",
            "culprit": culprit.frame.symbol if culprit else None,
            "conclusion": self.conclusion(),
            "stack": [f.as_dict() for f in self.stack],
            "frames": [f.as_dict() for f in self.frames],
            "notes": self.notes,
            "stopped": self.stopped,
            "stopped_at": self.stopped_at,
            "truncated": self.truncated,
            "seconds": self.seconds,
        }


def kernel_frames(sample: Sample) -> Sample:
    """``sample`` with only its kernel frames (leaf side)."""
    return _only(sample, lambda dso: dso == "[kernel.kallsyms]")


def process_frames(sample: Sample) -> Sample:
    """``sample`` with only its user-space frames, named as the files' symbol tables name them.

    perf names a frame by the function its debug info says holds the ip,
    which after LTO or inlining may not be a symbol of the file
    (``gc_collect_main`` for ``gc_collect_main.lto_priv.0``); the symbol
    that holds the ip is what a cut can name.
    """
    kept = _only(sample, lambda dso: dso not in ("[kernel.kallsyms]", "[unknown]", "[vdso]"))
    named = [_file_frame(dso, ip) for ip, dso in zip(kept.ips, kept.dsos, strict=True)]
    return replace(
        kept,
        stack=tuple(n[0] or name for n, name in zip(named, kept.stack, strict=True)),
        ips=tuple(n[1] for n in named),
    )


@functools.lru_cache(maxsize=4096)
def _file_frame(dso: str, offset: int) -> tuple[str | None, int]:
    """``(symbol name, link-time address)`` of a user frame perf gave as a file offset.

    perf prints a user frame's ip as an offset into its file; this turns it
    into the file's link-time address (what its symbols, call sites and
    disassembly use) and names the symbol that holds it.
    """
    if not dso.startswith("/"):
        return None, offset
    from knockout.elf import open_elf
    from knockout.symbols import elf_symbols

    try:
        address = open_elf(dso).vaddr_of_offset(offset)
        if address is None:
            return None, offset
        found = elf_symbols(dso).symbolize(address)
    except KnockoutError:
        return None, offset
    return (found.symbol.name if found and found.symbol else None), address


def _only(sample: Sample, keep: Callable[[str], bool]) -> Sample:
    if len(sample.dsos) != len(sample.stack):
        return sample
    k = 0
    while k < len(sample.stack) and not keep(sample.dsos[k]):
        k += 1  # the leaf side outside the kept code (e.g. a process's own syscalls)
    end = k
    while end < len(sample.stack) and keep(sample.dsos[end]):
        end += 1
    return replace(
        sample,
        stack=sample.stack[k:end],
        ips=sample.ips[k:end],
        dsos=sample.dsos[k:end],
    )


@dataclass(frozen=True)
class Profiled:
    """The climb's profile, and what it covers: busy CPUs per second of wall time."""

    profile: Profile
    seconds: float
    hz: int

    @property
    def busy_cpus(self) -> float:
        """Busy CPU-seconds per second (cpu-clock samples at ``hz`` over ``seconds``)."""
        return self.profile.busy / (self.hz * self.seconds) if self.seconds else 0.0


#: profiles taken before the climb gives up on a target with no hot frames
PROFILE_ATTEMPTS = 2


def profile_target(
    target: Target, seconds: float, workdir: Path, *, kallsyms: str | None = None
) -> Profiled:
    """A profile of ``target`` over ``seconds``: its own frames only (kernel or user).

    A profile with no frame of the target's own (perf wrote nothing in time, as
    seen once in a loaded TCG guest) is taken once more over twice the time.
    """
    profiled = _profile_once(target, seconds, workdir, kallsyms)
    for attempt in range(2, PROFILE_ATTEMPTS + 1):
        if hot_path(profiled.profile):
            break
        profiled = _profile_once(target, seconds * attempt, workdir, kallsyms)
    return profiled


def _profile_once(target: Target, seconds: float, workdir: Path, kallsyms: str | None) -> Profiled:
    recorder = Recorder(workdir, pid=target.pid, kallsyms=kallsyms)
    recorder.start()
    try:
        time.sleep(seconds)
        data = recorder.rotate()
        samples = recorder.script(data) if data is not None else []
    finally:
        recorder.stop()
    only = kernel_frames if target.abilities.kernel_text else process_frames
    return Profiled(profile_of(only(s) for s in samples), seconds, recorder.freq)


class _Cutter:
    """Plans the cut of one hot frame: at its entry, or at the call site in its caller."""

    def __init__(self, target: Target, profile: Profile, config: ClimbConfig) -> None:
        self.target = target
        self.profile = profile
        self.config = config
        self.listings: dict[str, Disassembler] = {}

    def plan(self, frame: HotFrame, caller: HotFrame | None) -> tuple[Cut, str]:
        value = self.config.return_value or 0
        if caller is not None and caller.return_ip is not None and self._shared(frame, caller):
            return self._call_site(frame, caller, value)
        return plan_at(self.target, frame.symbol, Return(value)), "entry"

    def _shared(self, frame: HotFrame, caller: HotFrame) -> bool:
        """Most of the frame's time comes through other callers than the hot path's."""
        total = self.profile.total_counts[frame.symbol]
        via = sum(
            n
            for e, n in self.profile.calls.items()
            if e.callee == frame.symbol and e.caller == caller.symbol
        )
        return total > 0 and via / total < SHARED_BELOW

    def _call_site(self, frame: HotFrame, caller: HotFrame, value: int) -> tuple[Cut, str]:
        assert caller.return_ip is not None
        listing = self.listing(caller.dso)
        site = call_site(listing, caller.return_ip)
        if site is None or site.symbol is None:
            raise KnockoutError(
                f"no call instruction returns to {caller.return_ip:#x} in {caller.symbol}; "
                "the stack was unwound wrongly (try a longer profile)"
            )
        spec = f"{site.symbol.name}+{site.offset:#x}"
        if self.target.pid is not None and caller.dso:
            spec = f"{site.symbol.name}@{caller.dso}+{site.offset:#x}"
        intent: Intent = SkipCall(value)
        return plan_at(self.target, spec, intent), f"call site in {caller.symbol}"

    def listing(self, dso: str | None) -> Disassembler:
        """The code perf's return addresses are in: the kernel's, or a process's ELF file."""
        key = dso or ""
        if key not in self.listings:
            if self.target.pid is None or not dso or not dso.startswith("/"):
                table = self.target.symbols()
                self.listings[key] = Disassembler(table, self.target.read, self.target.arch)
            else:
                from knockout.elf import open_elf
                from knockout.symbols import elf_symbols

                image = open_elf(dso)
                self.listings[key] = Disassembler(elf_symbols(dso), image.read, image.arch)
        return self.listings[key]


#: called with each frame before and after its trial
Progress = Callable[[FrameResult, str], None]


def climb(
    target: Target,
    symptom: Symptom,
    config: ClimbConfig | None = None,
    *,
    deny: DenyRules | None = None,
    cost_split: CostSplit | None = None,
    progress: Progress | None = None,
    restart: Callable[[], Target] | None = None,
) -> ClimbResult:
    """Climb ``target``'s hot stack, judging a cut of each frame on ``symptom``.

    ``restart`` (for a process knockout started itself) gives a fresh target
    after a cut crashed it; without it a crash ends the climb with what was
    found.
    """
    config = config or ClimbConfig()
    if target.pid is not None and config.trial.perf_pid is None:  # profile the process only
        config = replace(config, trial=replace(config.trial, perf_pid=target.pid))
    deny = deny or DenyRules.builtin("kernel" if target.abilities.kernel_text else "process")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="knockout-climb-") as tmp:
        profiled = profile_target(
            target, config.profile_seconds, Path(tmp), kallsyms=config.kallsyms
        )
    profile = profiled.profile
    path = hot_path(profile)
    stack = path[: config.max_frames]
    result = ClimbResult(
        target.description, symptom.name, symptom.unit, config.trial.healthy, stack
    )
    result.truncated = len(path) > len(stack)
    if not stack:
        result.stopped = (
            f"the profile of {target.description} has no frames of its own (is it busy? "
            "lengthen --profile)"
        )
        return result
    frames = [FrameResult(f) for f in stack]
    result.frames = frames
    cutter = _Cutter(target, profile, config)
    if cost_split is None and config.count:
        cost_split = ProbeCount(
            cutter, profiled.busy_cpus, config.count_min_calls, config.count_max_seconds
        )
    if cost_split is not None:
        _count(target, frames, profile, cost_split, config, result)
    broke = 0
    sick: FrameResult | None = None  # the first judged frame: its baseline is the sick system
    for i, fr in enumerate(frames):
        caller = stack[i + 1] if i + 1 < len(stack) else None
        if not _judge_frame(fr, caller, target, cutter, deny, symptom, config, progress):
            continue
        assert fr.trial is not None
        if fr.trial.kernel_crash is not None:
            result.stopped = crashed_kernel(fr.frame.symbol, fr.trial.kernel_crash)
            result.stopped_at = fr.frame.symbol
            break
        left = None if sick is None else symptom_left(sick, fr)
        if sick is None:
            sick = fr
        elif left:
            result.stopped = (
                f"{left}; an earlier cut changed the system for good "
                f"(after {_last_breaking(frames[:i])}): {fr.frame.symbol}'s trial and the "
                "frames above were not judged on the sick system; restart the workload and "
                "climb again"
            )
            result.stopped_at = fr.frame.symbol
            break
        if fr.verdict == "gone":
            break
        broke = broke + 1 if fr.verdict == "breaks" else 0
        if fr.verdict == "breaks" and not target.alive():
            if restart is None:
                result.stopped = f"{fr.frame.symbol}'s cut crashed {target.description}"
                break
            target = restart()
            cutter = _Cutter(target, profile, config)
        if broke >= BREAKS_IN_A_ROW:
            result.stopped = (
                f"{broke} frames in a row break the work when cut; the frames above them "
                "carry the work itself"
            )
            break
    result.seconds = time.monotonic() - began
    return result


def _upstream(counted: list[FrameResult]) -> str:
    """Where the cost split says the cost is made: the widest fan-out and the top frame's rate.

    The seed's lesson: a reclaim pass (``shrink_node``) walking thousands of
    memcgs, run often, is the cost; the hot leaf is only where it is paid.
    """
    fanned = [(f, *max(f.fanout.items(), key=lambda kv: kv[1])) for f in counted if f.fanout]
    if not fanned:
        return ""
    wide, callee, ratio = max(fanned, key=lambda t: t[2])
    said = (
        f": the cost is made upstream, {wide.frame.symbol} runs {wide.calls_per_s:.3g} times/s "
        f"and each run makes {ratio:.3g} calls of {callee}"
    )
    top = max(counted, key=lambda f: f.frame.depth)
    if top is not wide and top.calls_per_s is not None:
        said += (
            f"; {top.frame.symbol}, the highest frame counted, runs {top.calls_per_s:.3g} times/s"
        )
    return said


#: a later trial's baseline with less than this share of the first one's excess over healthy
#: is not the sick system any more: an earlier cut changed it for good (an OOM kill took part
#: of the workload, a charge function skipped left the accounting off)
SYMPTOM_LEFT = 0.5


def baseline_excess(trial: TrialResult) -> float:
    """The median baseline window's excess over healthy, in the judged domain (a cost).

    For a throughput that is time per unit of work above the healthy one.
    """
    level = _median_baseline(trial)
    if math.isnan(level):
        return 0.0
    design = trial.design
    if design.higher_is_better:
        level = 1.0 / level if level > 0 else math.inf
    return level - design.healthy_cost


def symptom_left(first: FrameResult, now: FrameResult) -> str | None:
    """Says so when ``now``'s baseline windows lost most of ``first``'s excess over healthy.

    None while the baseline is still the sick system (see :data:`SYMPTOM_LEFT`).
    """
    assert first.trial is not None and now.trial is not None
    if baseline_excess(now.trial) >= SYMPTOM_LEFT * baseline_excess(first.trial):
        return None
    unit = now.trial.unit
    level = _median_baseline(now.trial), _median_baseline(first.trial)
    return (
        f"the symptom left the baseline windows: {now.trial.symptom} {level[0]:.3g}{unit} in "
        f"{now.frame.symbol}'s, {level[1]:.3g}{unit} in {first.frame.symbol}'s"
    )


def _median_baseline(trial: TrialResult) -> float:
    values = trial.values("baseline")
    return statistics.median(values) if values else math.nan


def _last_breaking(frames: list[FrameResult]) -> str:
    """The frames whose cut broke the work (else every judged one), the last two."""
    names = [f.frame.symbol for f in frames if f.verdict == "breaks"] or [
        f.frame.symbol for f in frames if f.trial is not None
    ]
    return ", ".join(names[-2:])


def _judge_frame(
    fr: FrameResult,
    caller: HotFrame | None,
    target: Target,
    cutter: _Cutter,
    deny: DenyRules,
    symptom: Symptom,
    config: ClimbConfig,
    progress: Progress | None,
) -> bool:
    """Plan and judge one frame; False if it was refused (deny rule or planner)."""
    name = fr.frame.symbol
    try:
        symbol = target.symbols().lookup(name)
        fr.refused = deny.refusal(name, symbol.address, symbol.module)
    except KnockoutError as exc:
        fr.refused = f"refused: {exc}"
    if fr.refused is None:
        try:
            fr.cut, fr.via = cutter.plan(fr.frame, caller)
        except KnockoutError as exc:
            fr.refused = f"refused by the planner: {exc}"
    if fr.refused is not None or fr.cut is None:
        if progress:
            progress(fr, "refused")
        return False
    if progress:
        progress(fr, "trial")
    try:
        fr.trial = run_trial(target, [fr.cut], symptom, config.trial)
    except TargetGone as exc:
        fr.refused = f"the target exited before the trial: {exc}"
        return False
    fr.mechanism = ", ".join(fr.trial.mechanisms) or None
    if progress:
        progress(fr, "judged")
    return True


def _count(
    target: Target,
    frames: list[FrameResult],
    profile: Profile,
    cost_split: CostSplit,
    config: ClimbConfig,
    result: ClimbResult,
) -> None:
    """Fill each frame's calls/s, cost per call and fan-out (windows of their own)."""
    try:
        counts = cost_split(target, [f.frame for f in frames], config.count_seconds)
    except KnockoutError as exc:
        result.notes.append(f"calls were not counted: {exc}")
        return
    for fr, c in zip(frames, counts, strict=True):
        fr.calls_per_s = c.get("calls_per_s")
        fr.fanout = dict(c.get("fanout") or {})
        fr.count_note = c.get("note")
        busy_cpus = c.get("busy_cpus")
        if fr.calls_per_s and busy_cpus:
            fr.cost_per_call_s = fr.frame.total * float(busy_cpus) / fr.calls_per_s


class ProbeCount:
    """The default cost split: probes at each hot frame's entry and at its call of the one below.

    Counted with :func:`knockout.measure.calls.count_calls` (uprobes in a
    process, kprobes in the kernel) in a window of its own, before any trial.
    """

    def __init__(
        self, cutter: _Cutter, busy_cpus: float, min_calls: int = 0, max_seconds: float = 0.0
    ) -> None:
        self.cutter = cutter
        self.busy_cpus = busy_cpus
        self.min_calls = min_calls
        self.max_seconds = max_seconds

    def __call__(
        self, target: Target, frames: Sequence[HotFrame], seconds: float
    ) -> list[dict[str, Any]]:
        from knockout.measure.calls import count_calls

        entries = [f.symbol for f in frames]
        sites: dict[int, str] = {}
        for i, frame in enumerate(frames[1:], start=1):
            site = self._site(frame)
            if site is not None:
                sites[i] = site
        table = target.symbols()
        wanted = list(dict.fromkeys(entries + list(sites.values())))
        points = [p for p in wanted if _resolves(table, p)]
        skipped = [p for p in wanted if p not in points]
        counts = count_calls(
            points,
            seconds,
            pid=target.pid,
            kernel=target.pid is None,
            min_calls=self.min_calls,
            max_seconds=self.max_seconds,
        )
        notes = list(counts.notes)
        if skipped:
            notes.append(f"not counted (no symbol to probe): {', '.join(skipped)}")
        out: list[dict[str, Any]] = []
        for i, frame in enumerate(frames):
            calls = counts.calls_per_s(frame.symbol) if frame.symbol in points else None
            fan: dict[str, float] = {}
            if i in sites and sites[i] in points and calls:
                fan[frames[i - 1].symbol] = counts.calls_per_s(sites[i]) / calls
            note = "; ".join(notes) or None
            out.append(
                {"calls_per_s": calls, "fanout": fan, "busy_cpus": self.busy_cpus, "note": note}
            )
        return out

    def _site(self, frame: HotFrame) -> str | None:
        """``caller+0xOFF``: the call instruction in ``frame`` that leads down the hot path."""
        if frame.return_ip is None:
            return None
        site = call_site(self.cutter.listing(frame.dso), frame.return_ip)
        if site is None or site.symbol is None:
            return None
        return f"{site.symbol.name}+{site.offset:#x}"


def _resolves(table: Any, spec: str) -> bool:
    """``spec`` names code in ``table`` (a frame perf named from elsewhere may not)."""
    try:
        table.resolve(spec)
    except KnockoutError:
        return False
    return True
