#!/usr/bin/env python3
"""Bench: what a guest costs, x86_64 and arm64 (TCG on this host).

For each guest (``knockout vm`` and ``knockout vm --arch arm64``), ``BOOTS``
boots one after another (each: QEMU start to the first command), and in each
boot the wall time of ``uname -r``, ``knockout --help`` and one
``python3 -c 'import numpy, scipy.stats'`` -- the start-up every knockout
command in a guest pays.  Medians and the raw values go to
bench/out/vm_boot.json, with the prepared arm64 root's size and build times.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knockout.vm import GuestSession  # noqa: E402
from knockout.vm._platform import get_platform, prepared_root_dir  # noqa: E402

OUT = ROOT / "bench" / "out" / "vm_boot.json"
BOOTS = int(os.environ.get("VM_BOOT_BOOTS", "3"))
PY = ROOT / ".venv" / "bin" / "python"
COMMANDS = {
    "uname": "uname -r",
    "knockout_help": "knockout --help >/dev/null",
    "import_numpy_scipy": "python3 -c 'import numpy, scipy.stats'",
}


def _guest_commands(arch: str | None) -> dict[str, str]:
    if arch is None:  # the x86 guest runs the host's venv from the shared /
        return {
            **COMMANDS,
            "knockout_help": f"{PY} -m knockout --help >/dev/null",
            "import_numpy_scipy": f"{PY} -c 'import numpy, scipy.stats'",
        }
    return COMMANDS


def _one_guest(arch: str | None) -> dict[str, Any]:
    boots: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in COMMANDS}
    release = ""
    for _ in range(BOOTS):
        with GuestSession(arch=arch) as guest:
            boots.append(guest.boot_seconds)
            release = guest.release
            for name, command in _guest_commands(arch).items():
                result = guest.run(command, timeout=600)
                if result.returncode != 0:
                    raise SystemExit(f"{command!r} failed in the guest: {result.output}")
                runs[name].append(result.seconds)
    return {
        "release": release,
        "boot_s": {"median": statistics.median(boots), "raw": boots},
        **{name: {"median": statistics.median(v), "raw": v} for name, v in runs.items()},
    }


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def main() -> None:
    arm64_root = prepared_root_dir(get_platform("arm64"))
    times = arm64_root.parent / "build-times.json"
    result = {
        "host": f"{platform.machine()}, {os.cpu_count()} cores, TCG",
        "boots_per_guest": BOOTS,
        "x86_64": _one_guest(None),
        "arm64": _one_guest("arm64"),
        "arm64_root": {
            "path": str(arm64_root),
            "bytes": _du(arm64_root),
            "cache_bytes": sum(
                _du(arm64_root.parent / d)
                for d in ("debs", "wheels")
                if (arm64_root.parent / d).is_dir()
            ),
            "build_s": json.loads(times.read_text()) if times.exists() else None,
        },
        "qemu_aarch64": shutil.which("qemu-system-aarch64"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
