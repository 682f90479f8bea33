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
        f"--symptom \"cmd:'{DD}'\" --window 1s --windows 6 --save {out}; "
        f"rc=$?; umount {modules}; exit $rc"
    )
    result = guest.run(command, timeout=900, check=False)
    assert result.returncode == 0 and out.exists(), result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_cutting_the_read_path_of_dev_zero_is_gone(guest: Guest, ko: Path) -> None:
    guest.run(f"lsmod | grep -q '^knockout ' || insmod {ko}")
    doc = _trial(guest, "trial-kernel-gone", "--return", "0")
    assert doc["verdict"] == "gone", doc["reason"]
    assert doc["effect"] < -0.5
    assert doc["stopped"] is None
    diff = {h["symbol"]: h for h in doc["profile_diff"]}
    assert "clear_user_erms" in diff, doc["profile_diff"]
    assert diff["clear_user_erms"]["delta"] < -0.3
    assert "symptom gone" in doc["heat"]
    # reverted: reads of /dev/zero return zeros again
    assert guest.run("head -c 4 /dev/zero | od -An -tx1").output.split() == ["00"] * 4
    guest.assert_dmesg_clean()
