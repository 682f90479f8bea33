"""The arithmetic and parsing of call counting (no probes: tests/process and tests/vm make them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from knockout.errors import BadInput, NotFound
from knockout.journal import start_time
from knockout.measure.calls import (
    CallCounts,
    Snapshot,
    cost_per_call,
    counts_between,
    fanout,
    kernel_points,
    ns_per_hit,
    parse_profile,
)
from knockout.measure.perf import Sample
from knockout.measure.profile import profile_of
from knockout.measure.tracefs import Owner, error_message, group_name, parse_group


def _sample(*stack: str) -> Sample:
    return Sample("storm", 1, 1, 0.0, stack)


def test_cost_per_call_from_a_profile_and_a_count() -> None:
    # 200 busy samples at 100 Hz = 2 busy CPU-seconds; reclaim is on 150 stacks (75%)
    samples = [_sample("shrink_slab", "shrink_node", "reclaim")] * 100
    samples += [_sample("mem_cgroup_iter", "reclaim")] * 50 + [_sample("spin", "main")] * 50
    profile = profile_of(samples)
    share, busy_s = profile.total_share("reclaim"), profile.busy / 100
    assert (share, busy_s) == (0.75, 2.0)
    cost = cost_per_call(share, busy_s, calls=300)  # 300 reclaim passes in the same span
    assert cost == pytest.approx(0.005)
    # as rates: the same answer from busy CPU-s per s and calls per s over a 4 s profile
    assert cost_per_call(share, busy_s / 4, 300 / 4) == pytest.approx(cost)


def test_fanout_is_site_calls_per_caller_call() -> None:
    counts = CallCounts("kernel", "kprobe", 2.0, {"shrink_node": 10, "shrink_node+0x90": 20010})
    assert counts.fanout("shrink_node", "shrink_node+0x90") == 2001.0
    assert fanout(0, 5) is None


def test_misses_are_calls_too() -> None:
    start = Snapshot(1.0, {"a": 10}, {"a": 1})
    counts = counts_between(start, Snapshot(3.0, {"a": 30}, {"a": 4}), "kernel", "kprobe")
    assert (counts.hits["a"], counts.missed["a"], counts.calls("a")) == (20, 3, 23)
    assert counts.calls_per_s("a") == 11.5
    assert counts.probe_seconds(ns_per_hit=1000.0) == pytest.approx(23e-6)


def test_an_unprobed_point_is_named() -> None:
    counts = CallCounts("pid 1", "uprobe", 1.0, {"f": 3})
    with pytest.raises(NotFound, match="'g' was not probed"):
        counts.calls("g")


def test_as_dict_is_json() -> None:
    counts = CallCounts("pid 1", "uprobe", 0.5, {"f": 3}, shared_with=(7,), notes=("n",))
    data = json.loads(json.dumps(counts.as_dict()))
    assert data["points"]["f"] == {"hits": 3, "missed": 0, "calls_per_s": 6.0}
    assert data["shared_with"] == [7]


def test_ns_per_hit_needs_hits() -> None:
    assert ns_per_hit(0.5, 1.5, 1000) == 1e6
    with pytest.raises(BadInput, match="no probe hits"):
        ns_per_hit(0.5, 1.5, 0)


@pytest.mark.parametrize(
    "spec",
    ["shrink_slab foo=%ax", "a\nb", "p:g/e sym", "sym+", "sym+0xzz", "", "-:knockout_1_2_3/"],
)
def test_kernel_points_take_no_injected_probe_syntax(spec: str) -> None:
    with pytest.raises(BadInput):
        kernel_points([spec])


def test_kernel_points_normalize_offsets() -> None:
    places = [p.place for p in kernel_points(["f+0", "f.isra.0+16", "mod:g+0x10"])]
    assert places == ["f", "f.isra.0+0x10", "mod:g+0x10"]


def test_points_are_given_once() -> None:
    with pytest.raises(BadInput, match="given twice"):
        kernel_points(["f", "f"])
    with pytest.raises(BadInput, match="no probe points"):
        kernel_points([])


def test_profiles_parse_from_the_right() -> None:
    uprobes = "  /opt/my app/bin knockout_1_2_0_0    42\n  /bin/x  other  7\ngarbage line here\n"
    assert parse_profile(uprobes, "uprobe") == {
        "knockout_1_2_0_0": (42, 0),
        "other": (7, 0),
    }
    kprobes = "  knockout_1_2_0_0     1000     2\n  r_other  5  0\n"
    assert parse_profile(kprobes, "kprobe") == {"knockout_1_2_0_0": (1000, 2), "r_other": (5, 0)}


def test_group_names_carry_the_owner() -> None:
    me = Owner.current()
    assert me.alive()
    assert parse_group(group_name(me, 3)) == (me, 3)
    assert parse_group("knockout_12_x_0") is None
    assert not Owner(me.pid, me.start + 1).alive()  # the same pid, another start: not us


def test_an_owner_that_exited_is_dead() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = start_time(child.pid)
        assert started is not None
        owner = Owner(child.pid, started)
        assert owner.alive()
    finally:
        child.kill()
        child.wait()
    assert not owner.alive()


def test_error_log_keeps_the_last_entry_for_the_command() -> None:
    log = (
        "[1.0] trace_kprobe: error: Invalid probed address or symbol\n"
        "  Command: p:g/e nosuch\n"
        "            ^\n"
        "[2.0] trace_kprobe: error: Failed to register probe event\n"
        "  Command: p:g/e nosuch\n"
        "            ^\n"
    )
    assert error_message(log, "p:g/e nosuch") == "Failed to register probe event"
