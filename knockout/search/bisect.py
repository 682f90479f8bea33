"""Bisect inside a function: where between its entry and its return is the cost made?

The seed's method, automated: "modify this instruction to GOTO END" at a
point P, and see whether the symptom goes.  Returning at an early point
skips the costly code (the symptom goes); returning after it does not.  The
answer is the boundary between the two kinds of point: a region of code
(addresses and source lines) bounded by the verdicts on both sides.

Verdicts are noisy, so the search is a **probabilistic bisection**
(Jedynak, Frazier & Sznitman 2012): it keeps a posterior over where the
boundary is, probes the point that splits the posterior mass in half, and
weighs each answer by the chance that the verdict was wrong -- the trial's
own error rate (``--alpha`` for a finding, the persists level for its
absence) or ``noise`` (the chance that the monotone model does not hold,
default 2%), whichever is larger.  It stops when one boundary holds
``confidence`` of the posterior (default 99%).  With exact answers it needs
about ``log2(N) + 1`` probes among N points; with 10% wrong answers about
twice that.  ``inconclusive`` answers carry no information (the point is
probed again once, then left out), and a point whose cut ``breaks`` the
work is left out.

>>> oracle = lambda k: Answer(removes=k < 300, error=0.0)   # noiseless: boundary at 300
>>> found = search(1024, oracle)
>>> found.boundary, found.probes <= 12
(300, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from knockout.errors import BadInput
from knockout.search.candidates import Candidate, ReturnValue, return_points
from knockout.targets import Target
from knockout.trial import TrialConfig, TrialResult, crashed_kernel, run_trial

__all__ = [
    "Answer",
    "BisectConfig",
    "BisectResult",
    "Found",
    "Probe",
    "bisect",
    "search",
]

#: the chance that an answer is wrong for reasons no trial measures (a non-monotone function)
NOISE = 0.02


@dataclass(frozen=True)
class Answer:
    """What probing one point said: the cut removes the symptom (or not, or None: no answer)."""

    removes: bool | None
    error: float  # the chance this answer is wrong
    #: never probe this point again (its cut breaks the work)
    excluded: bool = False


@dataclass
class Found:
    """Where the boundary is: ``boundary`` is the first point whose cut does not remove it.

    ``low..high`` is the smallest run of boundaries holding ``confidence`` of
    the posterior: one boundary when the points around it could be probed,
    several when points in between could not (their cut was refused or broke
    the work).
    """

    boundary: int
    confidence: float
    probes: int
    asked: list[tuple[int, Answer]] = field(default_factory=list)
    low: int = 0
    high: int = 0


def search(
    n: int,
    ask: Callable[[int], Answer],
    *,
    confidence: float = 0.99,
    noise: float = NOISE,
    max_probes: int | None = None,
    probeable: Sequence[bool] | None = None,
) -> Found:
    """Probabilistic bisection for the first of ``n`` points whose answer is "does not remove".

    The boundary ``b`` is in ``0..n`` (``0``: not even the first point
    removes it; ``n``: every point does).  ``ask(k)`` probes point ``k``;
    ``probeable[k]`` False leaves a point out.
    """
    if n < 1:
        raise BadInput("a bisect needs at least one point to probe")
    usable = list(probeable) if probeable is not None else [True] * n
    budget = max_probes if max_probes is not None else 4 * math.ceil(math.log2(n + 1)) + 8
    posterior = [1.0 / (n + 1)] * (n + 1)
    asked: list[tuple[int, Answer]] = []
    retried: set[int] = set()
    while len(asked) < budget:
        best = max(range(n + 1), key=lambda b: posterior[b])
        if posterior[best] >= confidence:
            break
        k = _median_point(posterior, usable)
        if k is None or _split(posterior, k) < (1 - confidence) / 2:
            break  # no point left to probe divides what is still uncertain
        answer = ask(k)
        asked.append((k, answer))
        if answer.removes is None:
            if k in retried or answer.excluded:
                usable[k] = False
            retried.add(k)
            continue
        _update(posterior, k, answer.removes, max(answer.error, noise))
    best = max(range(n + 1), key=lambda b: posterior[b])
    low, high = _interval(posterior, confidence)
    return Found(best, posterior[best], len(asked), asked, low, high)


def _split(posterior: list[float], k: int) -> float:
    """The smaller of P(b <= k) and P(b > k): what an answer at ``k`` can tell apart."""
    below = sum(posterior[: k + 1])
    return min(below, 1 - below)


def _interval(posterior: list[float], confidence: float) -> tuple[int, int]:
    """The shortest run ``low..high`` of boundaries whose mass is at least ``confidence``."""
    n = len(posterior)
    best = (0, n - 1)
    lo, mass = 0, 0.0
    for hi in range(n):
        mass += posterior[hi]
        while lo < hi and mass - posterior[lo] >= confidence:
            mass -= posterior[lo]
            lo += 1
        if mass >= confidence and hi - lo < best[1] - best[0]:
            best = (lo, hi)
    return best


def _median_point(posterior: list[float], usable: list[bool]) -> int | None:
    """The usable point ``k`` whose answer splits the mass most evenly (b <= k vs b > k)."""
    best, best_gap = None, 2.0
    below = 0.0
    for k, ok in enumerate(usable):
        below += posterior[k]  # P(b <= k): probing k says "removes" iff b > k
        gap = abs(below - 0.5)
        if ok and gap < best_gap:
            best, best_gap = k, gap
    return best


def _update(posterior: list[float], k: int, removes: bool, error: float) -> None:
    """Bayes: "point k removes it" is true iff the boundary is after k (b > k)."""
    for b in range(len(posterior)):
        consistent = (b > k) == removes
        posterior[b] *= (1 - error) if consistent else error
    total = sum(posterior)
    for b in range(len(posterior)):
        posterior[b] /= total


@dataclass(frozen=True)
class BisectConfig:
    """How a bisect runs: its trials, how sure it must be, how many probes it may make."""

    trial: TrialConfig = field(default_factory=TrialConfig)
    confidence: float = 0.99
    noise: float = NOISE
    max_probes: int | None = None
    return_value: ReturnValue = None


@dataclass
class Probe:
    """One probed point and what its trial said."""

    index: int
    point: Candidate
    trial: TrialResult | None
    answer: Answer

    def as_dict(self) -> dict[str, Any]:
        j = self.trial.judgement if self.trial else None
        explained = j.explained if j and j.explained == j.explained else None
        return {
            "index": self.index,
            "point": self.point.location,
            "address": f"{self.point.address:#x}",
            "line": (
                f"{self.point.source.file}:{self.point.source.line}" if self.point.source else None
            ),
            "verdict": self.trial.verdict if self.trial else None,
            "removes": self.answer.removes,
            "confidence": 1 - self.answer.error,
            "explained": explained,
            "trial": self.trial.as_dict() if self.trial else None,
        }


@dataclass
class BisectResult:
    """The region the cost is in, and every probe that bounds it."""

    function: str
    target: str
    symptom: str
    points: list[Candidate]
    probes: list[Probe] = field(default_factory=list)
    found: Found | None = None
    seconds: float = 0.0
    stopped: str | None = None  #: why the search ended before an answer (a crashed kernel)

    @property
    def planned(self) -> list[Candidate]:
        return [p for p in self.points if p.planned]

    def region(self) -> tuple[Candidate | None, Candidate | None]:
        """The last point that removes the symptom and the first that does not."""
        if self.found is None:
            return None, None
        planned, low, high = self.planned, self.found.low, self.found.high
        return (planned[low - 1] if low > 0 else None), (
            planned[high] if high < len(planned) else None
        )

    def lines(self) -> list[str]:
        """The source lines of the region's instructions (``file:line``), in program order."""
        low, high = self.region()
        if low is None:
            return []
        end = high.address if high is not None else max(p.address for p in self.points) + 1
        seen: list[str] = []
        for p in self.points:
            if low.address <= p.address < end and p.source is not None:
                where = f"{p.source.file}:{p.source.line}"
                if where not in seen:
                    seen.append(where)
        return seen

    def conclusion(self) -> str:
        """One sentence from what was measured."""
        low, high = self.region()
        if self.stopped is not None:
            return f"{self.function}'s bisection stopped: {self.stopped}"
        if self.found is None:
            return f"{self.function} could not be bisected: no point could be cut"
        sure = f"{self.found.confidence:.0%} sure, {self.found.probes} probes"
        if low is None:
            return (
                f"returning at {self.function}'s entry does not remove {self.symptom}: the cost "
                f"is not made in {self.function} ({sure})"
            )
        end = high.location if high is not None else f"the end of {self.function}"
        lines = ", ".join(self.lines()[:4]) or "no line information"
        return (
            f"the cost is made between {low.location} and {end} ({lines}): returning before "
            f"it removes {self.symptom}, returning after it does not ({sure})"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the schema the report reads)."""
        low, high = self.region()
        return {
            "kind": "bisect",
            "function": self.function,
            "target": self.target,
            "symptom": self.symptom,
            "region": {
                "symbol": self.function,
                "start": f"{low.address:#x}" if low else None,
                "end": f"{high.address:#x}" if high else None,
                "from": low.location if low else None,
                "to": high.location if high else None,
                "lines": self.lines(),
            },
            "confidence": self.found.confidence if self.found else None,
            "conclusion": self.conclusion(),
            "points": len(self.points),
            "planned": len(self.planned),
            "refused": [
                {"point": p.location, "refused": p.refused} for p in self.points if p.refused
            ],
            "probes": [p.as_dict() for p in self.probes],
            "stopped": self.stopped,
            "seconds": self.seconds,
        }


def answer_of(result: TrialResult) -> Answer:
    """A trial's verdict as a bisect answer, weighted by its error rate."""
    design = result.design
    verdict = result.verdict
    if verdict in ("gone", "reduced"):
        return Answer(True, design.alpha)
    if verdict == "persists":
        return Answer(False, design.alpha_persists)
    return Answer(None, 0.5, excluded=verdict == "breaks")  # no answer from this point


def bisect(
    target: Target,
    function: str,
    symptom: Any,
    config: BisectConfig | None = None,
    *,
    refuse: Callable[[str, int], str | None] | None = None,
    progress: Callable[[Probe], None] | None = None,
) -> BisectResult:
    """Find where in ``function`` the cost behind ``symptom`` is made (see the module docs)."""
    config = config or BisectConfig()
    if target.pid is not None and config.trial.perf_pid is None:
        from dataclasses import replace

        config = replace(config, trial=replace(config.trial, perf_pid=target.pid))
    began = time.monotonic()
    points = return_points(target, function, return_value=config.return_value, refuse=refuse)
    result = BisectResult(function, target.description, symptom.name, points)
    planned = result.planned
    if not planned:
        return result

    def ask(k: int) -> Answer:
        cut = planned[k].cut
        assert cut is not None
        trial = run_trial(target, [cut], symptom, config.trial)
        answer = answer_of(trial)
        probe = Probe(k, planned[k], trial, answer)
        result.probes.append(probe)
        if progress:
            progress(probe)
        if trial.kernel_crash is not None:
            raise _KernelCrashed(crashed_kernel(planned[k].location, trial.kernel_crash))
        return answer

    try:
        result.found = search(
            len(planned),
            ask,
            confidence=config.confidence,
            noise=config.noise,
            max_probes=config.max_probes,
        )
    except _KernelCrashed as crashed:
        result.stopped = str(crashed)
    result.seconds = time.monotonic() - began
    return result


class _KernelCrashed(Exception):
    """A probe's cut crashed kernel code: the search ends there (internal)."""
