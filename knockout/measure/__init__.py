"""Measuring a symptom in windows, and profiling the windows with perf.

* :mod:`~knockout.measure.symptoms` -- ``sys``, ``load``, ``cmd:``, ``metric:``, ``hot:``;
* :mod:`~knockout.measure.perf` -- one ``perf record`` cut into windows, ``perf script`` parsing;
* :mod:`~knockout.measure.profile` -- per-window profiles and where the heat moved.
"""

from __future__ import annotations

from knockout.measure.perf import Recorder, Sample, parse_script, perf_problem
from knockout.measure.profile import (
    HeatShift,
    Profile,
    describe_heat,
    heat_diff,
    merge,
    profile_of,
)
from knockout.measure.symptoms import (
    CommandTime,
    Hot,
    Load,
    Metric,
    ProfileSymptom,
    Symptom,
    SymptomFailed,
    SysShare,
    parse_symptom,
)

__all__ = [
    "CommandTime",
    "HeatShift",
    "Hot",
    "Load",
    "Metric",
    "Profile",
    "ProfileSymptom",
    "Recorder",
    "Sample",
    "Symptom",
    "SymptomFailed",
    "SysShare",
    "describe_heat",
    "heat_diff",
    "merge",
    "parse_script",
    "parse_symptom",
    "perf_problem",
    "profile_of",
]
