"""Counting kernel calls with kprobes in the guest: counts equal the calls a program makes.

The calibrator (:mod:`knockout.measure.probecost`, built on the host into the
guest's rwdir) makes exactly M ``getppid()`` calls, or M ``poll()`` calls over
K descriptors.  Probe points: the entries of ``__x64_sys_getppid`` and
``do_sys_poll``, and a call site in each, found in the running kernel's own
debug vmlinux (the call of ``__task_pid_nr_ns`` in getppid, the call of
``__fdget`` in the poll loop: K calls per poll).  The guest side
(``tests/vm/test_calls_guest.py``) runs in one Python process and reports
JSON; the expected values are M, K and an M = 0 baseline run of the same
program.  No timing is asserted: the probe cost measured goes to
``bench/out/calls.json`` (``bench/calls.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knockout.dwarf import debug_vmlinux
from knockout.measure.probecost import build_calibrator, call_site_offsets
from tests.vm.conftest import Guest

REPO = Path(__file__).resolve().parents[2]
PY = REPO / ".venv" / "bin" / "python"
M, K = 2000, 7


def one_call_site(vmlinux: str, function: str, callee: str) -> str:
    """``function+OFF``: the one direct call of ``callee`` in ``function``."""
    offsets = call_site_offsets(vmlinux, function, callee)
    assert len(offsets) == 1, f"expected one call of {callee} in {function}: {offsets}"
    return f"{function}+{offsets[0]:#x}"


@pytest.fixture(scope="module")
def observed(guest: Guest) -> dict[str, Any]:
    """What the guest side counted (see tests/vm/test_calls_guest.py)."""
    found = debug_vmlinux(guest.release)
    assert found.path is not None, found.reason
    vmlinux = str(found.path)
    getppid_site = one_call_site(vmlinux, "__x64_sys_getppid", "__task_pid_nr_ns")
    poll_site = one_call_site(vmlinux, "do_sys_poll", "__fdget")
    calibrator = build_calibrator(guest.rwdir)
    out = guest.rwdir / "calls.json"
    out.unlink(missing_ok=True)
    result = guest.run(
        f"cd {REPO} && {PY} -m tests.vm.test_calls_guest {out} {calibrator} {M} {K} "
        f"{getppid_site} {poll_site}",
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and out.exists(), result.output
    data: dict[str, Any] = json.loads(out.read_text())
    data["sites"] = {"getppid": getppid_site, "poll": poll_site}
    return data


def test_getppid_entry_and_call_site_count_every_call(observed: dict[str, Any]) -> None:
    site = observed["sites"]["getppid"]
    base, counted = observed["getppid_baseline"], observed["getppid"]
    assert counted["__x64_sys_getppid"] == M + base["__x64_sys_getppid"], observed
    assert counted[site] == M + base[site], observed
    assert counted["do_sys_poll"] == base["do_sys_poll"], observed


def test_poll_call_site_has_fanout_k(observed: dict[str, Any]) -> None:
    site = observed["sites"]["poll"]
    base, counted = observed["poll_baseline"], observed["poll"]
    polls = counted["do_sys_poll"] - base["do_sys_poll"]
    lookups = counted[site] - base[site]
    assert (polls, lookups) == (M, M * K), observed
    assert lookups / polls == K


def test_refused_points_name_the_reason(observed: dict[str, Any]) -> None:
    said = list(observed["refusals"].values())
    blacklisted, inside, unknown = said
    assert blacklisted.startswith("Refused: ") and "kprobe blacklist" in blacklisted
    assert inside.startswith("Refused: ") and "instruction boundary" in inside
    assert unknown.startswith("NotFound: ") and "knockout_no_such_function" in unknown


def test_no_probe_is_left_behind(observed: dict[str, Any]) -> None:
    assert observed["held"] == [observed["group"]]  # the check sees probes that exist
    assert observed["left"] == observed["left_after_refusals"] == observed["left_at_end"] == []
    killed = observed["killed_owner"]
    assert killed["held"] == killed["after_kill"] == [killed["group"]]  # SIGKILL: left
    assert killed["after_next"] == []  # ... and removed by the next probe set


def test_probe_cost_runs_count_every_call(observed: dict[str, Any]) -> None:
    for cost in observed["cost"]:
        assert cost["hits"] == cost["calls"], cost


def test_kernel_log_is_clean(observed: dict[str, Any], guest: Guest) -> None:
    guest.assert_dmesg_clean()
