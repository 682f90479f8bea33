"""Symptoms: each measures one window and returns one number.

=====================  ==============================================  ===========
spelling               value of one window                             better is
=====================  ==============================================  ===========
``sys``                system CPU time, % of all CPUs (/proc/stat)     lower
``load``               runnable tasks, sampled every 50 ms, mean       lower
``cmd:'COMMAND'``      wall time of COMMAND, seconds (median of the     lower
                       runs that fit in the window, at least one)
``metric:'COMMAND'``   the number COMMAND prints (median of runs)      lower, or
                                                                       higher with
                                                                       ``--higher-is-better``
``hot:SYMBOL``         % of busy perf samples with SYMBOL on the       lower
                       stack (needs perf)
=====================  ==============================================  ===========

``hot:`` is shown for completeness but a poor basis for a verdict: cutting
a hot leaf often only moves the heat; judge the end symptom.
"""

from __future__ import annotations

import math
import re
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from knockout.errors import BadInput, KnockoutError
from knockout.measure.profile import Profile

__all__ = [
    "CommandTime",
    "Hot",
    "Load",
    "Metric",
    "ProfileSymptom",
    "Runs",
    "Symptom",
    "SymptomFailed",
    "SysShare",
    "parse_symptom",
]

#: runs a window makes at least before its symptom counts as failed
_TRIES = 3
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STAT_FIELDS = 8  # user nice system idle iowait irq softirq steal (guest* are inside user)


class SymptomFailed(KnockoutError, RuntimeError):
    """The symptom could not be measured (its command failed, printed no number, ...)."""


@runtime_checkable
class Symptom(Protocol):
    """One measurable symptom."""

    @property
    def name(self) -> str:
        """How the user spelled it, e.g. ``sys`` or ``cmd:'./repro'``."""
        ...

    @property
    def unit(self) -> str:
        """Unit of the values: ``%``, ``s``, ``tasks`` or ``""``."""
        ...

    @property
    def higher_is_better(self) -> bool:
        """True for throughput-like symptoms."""
        ...

    def measure(self, seconds: float) -> float:
        """Measure one window of about ``seconds`` and return its value."""
        ...


@runtime_checkable
class ProfileSymptom(Symptom, Protocol):
    """A symptom read from the window's profile instead of measured directly."""

    def from_profile(self, profile: Profile) -> float:
        """The value of a window, from its profile."""
        ...


def _cpu_times(path: Path) -> tuple[int, int]:
    """(system, total) jiffies of the ``cpu`` line of /proc/stat."""
    for line in path.read_text().splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1 : 1 + _STAT_FIELDS]]
            return fields[2], sum(fields)
    raise SymptomFailed(f"no 'cpu' line in {path}; is /proc mounted?")


@dataclass(frozen=True)
class SysShare:
    """System CPU time as a percentage of all CPUs' time in the window."""

    stat: Path = Path("/proc/stat")
    name: str = "sys"
    unit: str = "%"
    higher_is_better: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def measure(self, seconds: float) -> float:
        """Sample /proc/stat at both ends of the window."""
        sys0, tot0 = _cpu_times(self.stat)
        self.sleep(seconds)
        sys1, tot1 = _cpu_times(self.stat)
        if tot1 <= tot0:
            raise SymptomFailed(f"no CPU time passed in a {seconds}s window; use a longer --window")
        return 100.0 * (sys1 - sys0) / (tot1 - tot0)


def _procs_running(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("procs_running "):
            return int(line.split()[1])
    raise SymptomFailed(f"no procs_running in {path}; is /proc mounted?")


@dataclass(frozen=True)
class Load:
    """Runnable tasks (``procs_running``, less this reader), sampled every ``interval``."""

    stat: Path = Path("/proc/stat")
    interval: float = 0.05
    name: str = "load"
    unit: str = "tasks"
    higher_is_better: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def measure(self, seconds: float) -> float:
        """Mean of the samples taken during the window (at least one)."""
        samples = max(1, round(seconds / self.interval))
        counts = []
        for i in range(samples):
            counts.append(max(0, _procs_running(self.stat) - 1))
            if i + 1 < samples:
                self.sleep(self.interval)
        return statistics.fmean(counts)


def _run(command: str, timeout: float) -> tuple[float, str]:
    """Run ``command`` in a shell: (wall seconds, stdout); SymptomFailed if it fails."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SymptomFailed(
            f"{command!r} did not finish in {timeout:.0f}s; make it quicker or lengthen --window"
        ) from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SymptomFailed(f"{command!r} exited with status {proc.returncode} ({last})")
    return wall, proc.stdout


@dataclass
class Runs:
    """What the runs of one window gave: the values, and how many runs failed."""

    values: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """Three or more runs, every one the same value: the source may lag the window."""
        return len(self.values) >= 3 and len(set(self.values)) == 1


def _repeat(seconds: float, once: Callable[[], float], runs: Runs) -> float:
    """Median of ``once()`` run back to back until the window is over.

    A run that fails (a file read while it was being rewritten) is retried
    within the window; only a window in which every run failed fails.
    """
    runs.values.clear()
    runs.failures.clear()
    end = time.monotonic() + seconds
    while True:
        try:
            runs.values.append(once())
        except SymptomFailed as exc:
            runs.failures.append(str(exc))
        if time.monotonic() >= end and (runs.values or len(runs.failures) >= _TRIES):
            break
    if not runs.values:
        raise SymptomFailed(f"{runs.failures[-1]} (every run in the window, {len(runs.failures)})")
    return statistics.median(runs.values)


@dataclass(frozen=True)
class CommandTime:
    """Wall time of a reproducer command, run back to back through the window."""

    command: str
    timeout: float = 300.0
    unit: str = "s"
    higher_is_better: bool = False
    #: the runs of the last window
    runs: Runs = field(default_factory=Runs, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"cmd:{shlex.quote(self.command)}"

    def measure(self, seconds: float) -> float:
        """Median wall time of the runs in the window."""
        return _repeat(seconds, lambda: _run(self.command, self.timeout)[0], self.runs)


def parse_number(command: str, stdout: str) -> float:
    """The last number ``command`` printed; SymptomFailed if none."""
    numbers = _NUMBER.findall(stdout)
    if not numbers:
        shown = stdout.strip()[-60:] or "nothing"
        raise SymptomFailed(f"{command!r} printed {shown!r}; a metric command must print a number")
    return float(numbers[-1])


@dataclass(frozen=True)
class Metric:
    """A number printed by a command, run back to back through the window."""

    command: str
    higher_is_better: bool = False
    timeout: float = 300.0
    unit: str = ""
    #: the runs of the last window
    runs: Runs = field(default_factory=Runs, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"metric:{shlex.quote(self.command)}"

    def measure(self, seconds: float) -> float:
        """Median of the numbers printed in the window."""
        return _repeat(
            seconds,
            lambda: parse_number(self.command, _run(self.command, self.timeout)[1]),
            self.runs,
        )


@dataclass(frozen=True)
class Hot:
    """Percent of busy perf samples whose stack contains ``symbol``."""

    symbol: str
    unit: str = "%"
    higher_is_better: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"hot:{self.symbol}"

    def measure(self, seconds: float) -> float:
        """Wait out the window; the value comes from :meth:`from_profile`."""
        self.sleep(seconds)
        return math.nan

    def from_profile(self, profile: Profile) -> float:
        """The inclusive share of ``symbol`` in the window's profile, in percent.

        A window without busy samples (nothing of the profiled process ran)
        has a share of 0.
        """
        return 100.0 * profile.total_share(self.symbol)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_symptom(text: str, *, higher_is_better: bool = False) -> Symptom:
    """The symptom a ``--symptom`` spelling names (see the module docstring)."""
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    arg = _unquote(arg)
    if higher_is_better and kind != "metric":
        raise BadInput(f"--higher-is-better applies to metric: symptoms only, not {text!r}")
    if not sep and kind == "sys":
        return SysShare()
    if not sep and kind == "load":
        return Load()
    if sep and arg and kind == "cmd":
        return CommandTime(arg)
    if sep and arg and kind == "metric":
        return Metric(arg, higher_is_better=higher_is_better)
    if sep and arg and kind == "hot":
        return Hot(arg)
    raise BadInput(
        f"unknown symptom {text!r}; use sys, load, cmd:'COMMAND', metric:'COMMAND' or hot:SYMBOL"
    )
