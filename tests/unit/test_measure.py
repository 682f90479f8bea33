"""knockout.measure: perf script parsing on saved real outputs, profiles, heat, symptoms.

Fixtures (tests/fixtures/):

* ``perf-script-system.txt`` -- ``perf record -a -g -e cpu-clock -F 499``
  for 0.6 s on the 2-CPU host while ``planted hammer`` drove ``planted
  server`` (perf 6.1, host kernel 6.18), then ``perf script -F
  comm,pid,tid,time,ip,sym,dso --ns``;
* ``perf-script-dwarf.txt`` -- the server alone, ``-p PID --call-graph
  dwarf,8192 -F 199``: an -O2 binary without frame pointers, whole stacks;
* ``perf-script-guest.txt`` -- in the TCG guest (Debian 6.1 kernel, perf 6.1),
  ``perf record -a -g -e cpu-clock -F 499 -- dd if=/dev/zero of=/dev/null
  bs=1M count=300``, first 247 samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from knockout.errors import BadInput
from knockout.measure import (
    CommandTime,
    Hot,
    Load,
    Metric,
    Profile,
    Sample,
    SymptomFailed,
    SysShare,
    describe_heat,
    heat_diff,
    merge,
    parse_script,
    parse_symptom,
    perf_problem,
    profile_of,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
SYSTEM = FIXTURES / "perf-script-system.txt"
DWARF = FIXTURES / "perf-script-dwarf.txt"
GUEST = FIXTURES / "perf-script-guest.txt"
_HEADER = re.compile(r"^\S.*\s\d+/\d+\s+\d+\.\d+:")


def _samples(path: Path) -> list[Sample]:
    return list(parse_script(path.read_text().splitlines()))


# -- perf script parsing -------------------------------------------------------------------


@pytest.mark.parametrize("path", [SYSTEM, DWARF, GUEST])
def test_every_sample_of_a_real_output_is_parsed(path: Path) -> None:
    text = path.read_text()
    headers = [ln for ln in text.splitlines() if _HEADER.match(ln)]
    samples = _samples(path)
    assert len(samples) == len(headers) > 0
    # one frame per ip of the machine's stack: perf's inlined functions at an ip are not frames
    machine = 0
    for block in text.split("\n\n"):
        ips = [ln.split()[0] for ln in block.splitlines() if ln.startswith("\t")]
        machine += sum(1 for k, ip in enumerate(ips) if k == 0 or ip != ips[k - 1])
    assert sum(len(s.stack) for s in samples) == machine
    assert all(len(s.ips) == len(s.dsos) == len(s.stack) for s in samples)
    assert all(d != "inlined" for s in samples for d in s.dsos)
    times = [s.time for s in samples]
    assert times == sorted(times)
    assert sum(1 for s in samples if not s.stack) <= 2  # perf can record a sample without frames


def test_system_wide_output_has_both_servers_and_the_kernel() -> None:
    samples = _samples(SYSTEM)
    comms = {s.comm for s in samples}
    assert "planted" in comms
    planted = [s for s in samples if s.comm == "planted"]
    assert any("read_zero" in s.stack for s in planted)
    # kernel frames are named from kallsyms, user frames of unnamed code by their dso
    assert any(f.startswith("[") and f.endswith("]") for s in samples for f in s.stack)


def test_dwarf_stacks_reach_the_planted_function_through_O2_code() -> None:
    samples = [s for s in _samples(DWARF) if s.comm == "planted"]
    burning = [s for s in samples if s.stack[0] == "read_zero"]
    assert burning
    for s in burning:
        i = s.stack.index("planted_cost")
        assert s.stack[i + 1 : i + 3] == ("handle", "serve")


def test_guest_profile_shows_the_read_path_of_dev_zero() -> None:
    samples = _samples(GUEST)
    prof = profile_of(samples)
    assert prof.idle == sum(1 for s in samples if s.comm == "swapper")
    assert prof.top(1)[0][0] == "clear_user_erms"
    dd = [s for s in samples if s.comm == "dd" and "read_zero" in s.stack]
    assert len(dd) > 50
    for s in dd:
        assert s.stack[s.stack.index("read_zero") + 1] == "vfs_read"


def test_parse_odd_lines() -> None:
    text = """\
Web Content  4242/4243  100.000000001:
\t     55d0c0de1234 operator new(unsigned long) (/usr/lib/libstdc++.so.6)
\t     55d0c0de9999 [unknown] (/opt/app/bin/server)
\t     7f0000000000 [unknown] ([unknown])
\t           8e030 [unknown] (/memfd:sealed-91173221a7ea (deleted))
\t           8e031 f(int) (/x (deleted))
Warning: something perf says between samples

swapper     0/0   100.5:
\tffffffff81000000 pv_native_safe_halt ([kernel.kallsyms])
"""
    a, b = list(parse_script(text.splitlines()))
    assert (a.comm, a.pid, a.tid, a.time) == ("Web Content", 4242, 4243, 100.000000001)
    assert a.stack == (
        "operator new(unsigned long)",
        "[server]",
        "[unknown]",
        "[memfd:sealed-91173221a7ea]",
        "f(int)",
    )
    assert b.idle and b.stack == ("pv_native_safe_halt",)


# -- profiles and heat -----------------------------------------------------------------------


def test_profile_of_real_samples() -> None:
    samples = _samples(SYSTEM)
    prof = profile_of(samples)
    assert prof.busy + prof.idle == len(samples)
    assert sum(prof.self_counts.values()) == prof.busy
    assert 0 < prof.total_share("do_syscall_64") <= 1
    assert prof.self_share("read_zero") <= prof.total_share("read_zero")
    top = prof.top(5)
    assert [share for _, share in top] == sorted((share for _, share in top), reverse=True)


def test_dwarf_profile_puts_the_planted_cost_on_top() -> None:
    prof = profile_of(_samples(DWARF))
    assert prof.total_share("planted_cost") > 0.5
    assert prof.top(1)[0][0] == "read_zero"
    assert Hot("planted_cost").from_profile(prof) == pytest.approx(
        100 * prof.total_share("planted_cost")
    )


def _prof(counts: dict[str, int], idle: int = 0) -> Profile:
    samples = [
        Sample("k", 1, 1, 0.0, (leaf, "shrink_node", "try_charge_memcg"))
        for leaf, n in counts.items()
        for _ in range(n)
    ]
    samples += [Sample("swapper", 0, 0, 0.0, ("default_idle",))] * idle
    return profile_of(samples)


def test_heat_moved_line_reads_like_the_notebook() -> None:
    base = _prof({"shrink_slab": 300, "mem_cgroup_iter": 200, "xa_load": 500})
    cut = _prof({"shrink_slab": 230, "mem_cgroup_iter": 260, "xa_load": 510})
    shifts = heat_diff(base, cut)
    assert [h.symbol for h in shifts[:2]] == ["shrink_slab", "mem_cgroup_iter"]
    line = describe_heat(shifts, "persists", busy=(base.busy, cut.busy))
    assert line == "shrink_slab \u22127%, mem_cgroup_iter +6%: heat moved, symptom persists"
    # inclusive shares: a leaf's equals its self share; the common callers stay at 100%
    assert (shifts[0].baseline_total, shifts[0].cut_total) == pytest.approx((0.3, 0.23))
    assert base.total_share("shrink_node") == cut.total_share("shrink_node") == 1.0


def test_heat_within_sampling_noise_is_not_called_moved() -> None:
    base = _prof({"a": 50, "b": 50})
    cut = _prof({"a": 46, "b": 54})  # 4 points on 100 samples: noise
    line = describe_heat(heat_diff(base, cut), "persists", busy=(100, 100))
    assert line == "profile unchanged: symptom persists"


def test_heat_gone_and_merge() -> None:
    base = merge([_prof({"burn": 90, "work": 10}), _prof({"burn": 90, "work": 10}, idle=50)])
    assert (base.busy, base.idle) == (200, 50)
    cut = _prof({"work": 20}, idle=380)
    line = describe_heat(heat_diff(base, cut), "gone", busy=(base.busy, cut.busy))
    assert line.startswith("burn \u221290%, work +90%") and line.endswith("symptom gone")
    assert cut.idle_share == pytest.approx(0.95)


# -- symptoms --------------------------------------------------------------------------------


def _stat_writer(path: Path, lines: list[str]) -> Callable[[float], None]:
    """A ``sleep`` that, instead of sleeping, moves /proc/stat on to the next state."""
    states = iter(lines)
    path.write_text(next(states))

    def sleep(_: float) -> None:
        path.write_text(next(states))

    return sleep


def test_sys_share_from_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    before = "cpu  100 5 50 800 10 0 5 0 7 0\ncpu0 1 2 3\n"
    after = "cpu  110 5 90 800 10 0 5 0 9 0\ncpu0 1 2 3\n"  # 50 jiffies, 40 system
    sym = SysShare(stat=stat, sleep=_stat_writer(stat, [before, after]))
    assert sym.measure(1.0) == pytest.approx(80.0)
    frozen = SysShare(stat=stat, sleep=lambda _: None)
    with pytest.raises(SymptomFailed, match="longer --window"):
        frozen.measure(1.0)


def test_load_samples_procs_running(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    states = [f"cpu 1 1 1 1\nprocs_running {n}\n" for n in (3, 5, 1, 3)]
    load = Load(stat=stat, interval=0.25, sleep=_stat_writer(stat, states))
    assert load.measure(1.0) == pytest.approx((2 + 4 + 0 + 2) / 4)  # less the reader itself


def test_command_time_and_failure() -> None:
    sym = CommandTime("sleep 0.05")
    assert sym.measure(0.01) >= 0.05
    assert sym.name == "cmd:'sleep 0.05'"
    with pytest.raises(SymptomFailed, match="status 3"):
        CommandTime("echo oops >&2; exit 3").measure(0.01)


def test_metric_reads_the_last_number() -> None:
    assert Metric("echo 'rate: 42.5 req/s'").measure(0.01) == 42.5
    assert Metric("printf '1e3\\n'").measure(0.01) == 1000.0
    with pytest.raises(SymptomFailed, match="must print a number"):
        Metric("echo none").measure(0.01)


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("sys", SysShare, "sys"),
        ("load", Load, "load"),
        ("cmd:'./repro --fast'", CommandTime, "cmd:'./repro --fast'"),
        ("cmd:sleep 1", CommandTime, "cmd:'sleep 1'"),
        ('metric:"./tput"', Metric, "metric:./tput"),
        ("hot:shrink_slab", Hot, "hot:shrink_slab"),
    ],
)
def test_parse_symptom(text: str, kind: type, name: str) -> None:
    sym = parse_symptom(text)
    assert isinstance(sym, kind)
    assert sym.name == name


def test_parse_symptom_errors() -> None:
    with pytest.raises(BadInput, match="use sys, load"):
        parse_symptom("cpu")
    with pytest.raises(BadInput, match="metric: symptoms only"):
        parse_symptom("sys", higher_is_better=True)
    assert parse_symptom("metric:x", higher_is_better=True).higher_is_better


# -- perf availability -----------------------------------------------------------------------


def test_missing_perf_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    problem = perf_problem()
    assert problem is not None and "apt-get install linux-perf" in problem


def test_paranoid_perf_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda _: "/usr/bin/perf")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    paranoid = tmp_path / "paranoid"
    paranoid.write_text("2\n")
    monkeypatch.setattr(
        "knockout.measure.perf.Path", lambda p: paranoid if "paranoid" in str(p) else Path(p)
    )
    problem = perf_problem(system_wide=True)
    assert problem is not None and "perf_event_paranoid is 2" in problem
    assert "sysctl -w kernel.perf_event_paranoid=0" in problem
    assert perf_problem(system_wide=False) is None  # a process of one's own: allowed at 2
