"""A kernel trial in the guest: cutting a syscall path's cost is judged ``gone``.

``dd if=/dev/zero of=/dev/null bs=1M count=500`` spends most of its time in
``read(2)`` -> ``vfs_read`` -> ``read_zero`` -> ``clear_user``.  Cutting
``read_zero`` (``--return 0``: every read of /dev/zero is at end of file)
removes that cost; ``knockout trial --kernel`` must say ``gone`` and its
profile diff must show the heat of ``clear_user_erms`` leave.  perf runs in
the guest with an empty tmpfs over ``/lib/modules/<release>/kernel`` so that
``perf record`` starts in seconds (see docs in knockout.vm).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knockout.targets.kernel import build_module
from knockout.vm import default_kernel, kernel_release
from knockout.workloads.memcg_storm import build_helper
from tests.vm.conftest import Guest

REPO = Path(__file__).resolve().parents[2]
PY = REPO / ".venv" / "bin" / "python"
DD = "dd if=/dev/zero of=/dev/null bs=1M count=500 2>/dev/null"


@pytest.fixture(scope="module")
def ko() -> Path:
    """knockout.ko for the guest's kernel, built on the host."""
    return build_module(kernel_release(default_kernel()))


def _trial(guest: Guest, name: str, *options: str) -> dict[str, Any]:
    out = guest.rwdir / f"{name}.json"
    out.unlink(missing_ok=True)
    modules = "/lib/modules/$(uname -r)/kernel"
    command = (
        f"mount -t tmpfs -o ro,mode=0755 tmpfs {modules} && "
        f"cd {REPO} && {PY} -m knockout trial read_zero --kernel {' '.join(options)} "
        f"--symptom \"cmd:'{DD}'\" --window 1s --save {out}; "
        f"rc=$?; umount {modules}; exit $rc"
    )
    result = guest.run(command, timeout=900, check=False)
    assert result.returncode == 0 and out.exists(), result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_cutting_the_read_path_of_dev_zero_is_gone(guest: Guest, ko: Path) -> None:
    guest.run(f"lsmod | grep -q '^knockout ' || insmod {ko}")
    doc = _trial(guest, "trial-kernel-gone", "--return", "0")
    # dd still loops over its syscalls with the reads' cost gone: against a healthy zero the
    # cut explains most of the symptom, and with the noise of TCG the trial may or may not
    # show 80% of it
    assert doc["verdict"] in ("gone", "reduced"), doc["reason"]
    assert doc["effect"] < -0.5 and doc["explained"] > 0.5
    assert doc["stopped"] is None
    diff = {h["symbol"]: h for h in doc["profile_diff"]}
    assert "clear_user_erms" in diff, doc["profile_diff"]
    assert diff["clear_user_erms"]["delta"] < -0.3
    assert "symptom gone" in doc["heat"]
    # reverted: reads of /dev/zero return zeros again
    assert guest.run("head -c 4 /dev/zero | od -An -tx1").output.split() == ["00"] * 4
    guest.assert_dmesg_clean()


#: ``knockout`` with kernel renewals withheld: the module's TTL really lapses mid-window
NO_RENEW = """
import functools, sys
import knockout.targets.kernel as kernel
kernel.KernelTarget.__init__ = functools.partialmethod(kernel.KernelTarget.__init__, renew=False)
from knockout.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_cut_that_expires_mid_window_stops_the_trial_without_a_verdict(
    guest: Guest, ko: Path
) -> None:
    guest.run(f"lsmod | grep -q '^knockout ' || insmod {ko}")
    script = guest.rwdir / "no_renew.py"
    script.write_text(NO_RENEW)
    err_file, out_file = guest.rwdir / "err.txt", guest.rwdir / "out.txt"
    result = guest.run(
        f"cd {REPO} && {PY} {script} trial read_zero --kernel --return 0 --ttl 0.5 "
        f"--symptom \"cmd:'{DD}'\" --window 2s --windows 6 --no-warmup --no-profile "
        f"2>{err_file} >{out_file}; echo rc=$?; cat {err_file}; echo --; cat {out_file}",
        timeout=600,
    )
    rc, rest = result.output.split("\n", 1)
    err, out = rest.split("--\n", 1)
    assert rc == "rc=2", result.output
    lines = [line for line in err.splitlines() if line.startswith("knockout: ")]
    assert len(lines) == 1 and "at read_zero" in lines[0] and "no verdict" in lines[0], err
    assert "gone" not in out and "persists" not in out and "reduced" not in out, out
    # the TTL put the text back: reads of /dev/zero return zeros again, nothing is held
    assert guest.run("head -c 4 /dev/zero | od -An -tx1").output.split() == ["00"] * 4
    assert "no cuts in place" in guest.run(f"cd {REPO} && {PY} -m knockout list --kernel").output
    guest.assert_dmesg_clean()


def test_cutting_reclaim_under_memory_max_breaks_with_the_oom_kills_named(
    guest: Guest, ko: Path
) -> None:
    """Without reclaim the pod's workload is OOM-killed: sys drops, and that is no fix."""
    storm = f"cd {REPO} && {PY} -m knockout.workloads.memcg_storm"
    build_helper()
    guest.run(f"lsmod | grep -q '^knockout ' || insmod {ko}")
    started = guest.run(f"{storm} start --children 100", timeout=300).output
    info = json.loads(started[started.index("{") :])
    # the shared guest boots with Debian's kmem accounting: reported on, seen in a child's slab
    assert (info["kmem"], info["observed_in_child"], info["cmdline_nokmem"]) == (True, True, False)
    symbol = "try_to_free_mem_cgroup_pages"
    try:
        before = guest.run(
            f"cd {REPO} && {PY} -m knockout disasm {symbol} --kernel --json"
        ).output
        out = guest.rwdir / "breaks.json"
        result = guest.run(
            f"cd {REPO} && {PY} -m knockout trial {symbol} --kernel --return 0 --symptom sys "
            f"--cgroup {info['pod']} --work \"metric:{info['work']}\" --window 2s --no-profile "
            f"--save {out}",
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.output
        doc: dict[str, Any] = json.loads(out.read_text())
        after = guest.run(f"cd {REPO} && {PY} -m knockout disasm {symbol} --kernel --json").output
    finally:
        guest.run(f"{storm} stop", timeout=300)
    assert doc["verdict"] == "breaks", doc["reason"]
    assert any("OOM kill" in e and info["pod"] in e for e in doc["breaks"]), doc["breaks"]
    assert doc["stopped"] is None and len([w for w in doc["windows"] if w["arm"] == "cut"]) <= 2
    # the kernel text is restored and the guest is healthy after
    assert json.loads(before[before.index("[") :]) == json.loads(after[after.index("[") :])
    assert "no cuts in place" in guest.run(f"cd {REPO} && {PY} -m knockout list --kernel").output
    guest.assert_dmesg_clean()  # the OOM reports' stack dumps are evidence, not problems
    assert guest.run("echo alive").output.strip() == "alive"
