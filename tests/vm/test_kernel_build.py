"""The module builds with no warnings: for the guest's x86_64 kernel and, cross, for arm64.

No guest is booted here.  The arm64 build needs Debian's arm64 headers for
the same release; they are fetched with ``apt-get download`` (after
``dpkg --add-architecture arm64``) and unpacked into the kmod cache, never
installed.  Without network or apt the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from knockout.arch import get_arch
from knockout.targets.kernel import CACHE_ROOT, SOURCE_DIR, build_module
from knockout.vm import default_kernel, kernel_release

#: where the arm64 headers are unpacked: <root>/usr/src/linux-headers-<release>
ARM64_ROOT = CACHE_ROOT.parent / "arm64-headers" / "root"


def _warnings(kdir: Path, arch_args: list[str], tmp: Path) -> str:
    """Build from scratch with W=1 and return the compiler's complaints."""
    for name in ("knockout.c", "Kbuild"):
        shutil.copy2(SOURCE_DIR / name, tmp / name)
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


def test_x86_64_module_builds_clean_and_is_cached(tmp_path: Path) -> None:
    release = kernel_release(default_kernel())
    assert _warnings(Path(f"/lib/modules/{release}/build"), [], tmp_path) == ""
    ko = build_module(release)
    assert ko.exists() and build_module(release) == ko  # cached: same path, no rebuild
    assert release in ko.parent.name


def _arm64_headers(release: str) -> Path:
    kdir = ARM64_ROOT / "usr" / "src" / f"linux-headers-{release}"
    if (kdir / "Makefile").exists():
        return kdir
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("no aarch64-linux-gnu-gcc; apt-get install gcc-aarch64-linux-gnu")
    common = release.rsplit("-", 1)[0] + "-common"
    debs = ARM64_ROOT.parent
    debs.mkdir(parents=True, exist_ok=True)
    steps = [
        ["dpkg", "--add-architecture", "arm64"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "download", f"linux-headers-{release}:arm64", f"linux-headers-{common}"],
    ]
    for step in steps:
        proc = subprocess.run(step, cwd=debs, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot fetch Debian's arm64 headers ({' '.join(step)}): {proc.stderr}")
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(ARM64_ROOT)], check=True)
    # the headers point at the build host's kbuild scripts: use this host's (same version)
    kbuild = ARM64_ROOT / "usr" / "lib"
    kbuild.mkdir(parents=True, exist_ok=True)
    for tree in Path("/usr/lib").glob("linux-kbuild-*"):
        link = kbuild / tree.name
        if not link.exists():
            os.symlink(tree, link)
    return kdir


def test_module_cross_builds_clean_for_arm64(tmp_path: Path) -> None:
    release = kernel_release(default_kernel()).replace("-amd64", "-arm64")
    kdir = _arm64_headers(release)
    cross = ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"]
    assert _warnings(kdir, cross, tmp_path) == ""
    ko = build_module(release, kdir=kdir, arch=get_arch("aarch64"))
    head = ko.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
