"""The module builds with no warnings (W=1): both x86_64 kernels, and arm64 (cross).

No guest is booted here.  ``make setup`` installs Debian's 6.1 and 6.12
kernels with their headers, and unpacks (never installs) Debian's arm64
headers for the 6.1 arm64 release of the same ABI into the kmod cache
(``mk/kernels.mk``); a missing one fails and names the make target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from knockout.arch import get_arch
from knockout.targets.kernel import SOURCE_DIR, build_module
from tests.vm.test_kmod_refusals import FIXTURE_DIR, build_fixture, installed_kernels

#: where mk/kernels.mk unpacks the arm64 headers: <root>/usr/src/linux-headers-<release>
#: (its ARM64_HEADERS; $KNOCKOUT_ARM64_HEADERS moves both)
ARM64_ROOT = (
    Path(os.environ.get("KNOCKOUT_ARM64_HEADERS") or "/var/cache/knockout/arm64-headers") / "root"
)


def _warnings(kdir: Path, arch_args: list[str], tmp: Path, source: Path = SOURCE_DIR) -> str:
    """Build from scratch with W=1 and return the compiler's complaints."""
    for name in ("Kbuild", *(p.name for p in source.glob("*.c"))):
        shutil.copy2(source / name, tmp / name)
    proc = subprocess.run(
        ["make", "-C", str(kdir), *arch_args, f"M={tmp}", "W=1", "modules"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return "\n".join(
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "warning" in line.lower() and "Skipping BTF" not in line
    )


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_x86_64_module_builds_clean_and_is_cached(series: str, tmp_path: Path) -> None:
    kernels = installed_kernels()
    assert series in kernels, f"no Linux {series} installed; run make setup (mk/kernels.mk)"
    release = kernels[series].name.removeprefix("vmlinuz-")
    assert _warnings(Path(f"/lib/modules/{release}/build"), [], tmp_path) == ""
    ko = build_module(release)
    assert ko.exists() and build_module(release) == ko  # cached: same path, no rebuild
    assert release in ko.parent.name
    fixture = build_fixture(release)
    assert fixture.exists() and build_fixture(release) == fixture
    assert (FIXTURE_DIR / "ko_fixture.c").exists()


def test_module_cross_builds_clean_for_arm64(tmp_path: Path) -> None:
    release = installed_kernels()["6.1"].name.removeprefix("vmlinuz-").replace("-amd64", "-arm64")
    kdir = ARM64_ROOT / "usr" / "src" / f"linux-headers-{release}"
    assert (kdir / "Makefile").exists(), (
        f"no arm64 headers for {release} at {kdir}; run make setup (mk/kernels.mk arm64-headers)"
    )
    cross = ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"]
    assert _warnings(kdir, cross, tmp_path) == ""
    ko = build_module(release, kdir=kdir, arch=get_arch("aarch64"))
    head = ko.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
