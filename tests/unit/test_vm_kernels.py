"""Which kernel a guest boots: the default series, ``--kernel`` prefixes and paths, the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knockout.errors import NotFound
from knockout.vm import DEFAULT_SERIES, find_kernel, installed_kernels

RELEASES = ("6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.117+deb12-amd64", "6.12.9+deb12-amd64")


def _boot(tmp_path: Path, releases: tuple[str, ...] = RELEASES) -> tuple[Path, Path]:
    """A /boot and /lib/modules holding ``releases`` (an image and its modules.dep each)."""
    boot, modules = tmp_path / "boot", tmp_path / "modules"
    for release in releases:
        boot.mkdir(exist_ok=True)
        (boot / f"vmlinuz-{release}").write_bytes(b"")
        (modules / release).mkdir(parents=True)
        (modules / release / "modules.dep").write_text("")
    return boot, modules


def test_the_default_is_the_newest_of_debians_series_not_the_newest_kernel(
    tmp_path: Path,
) -> None:
    boot, modules = _boot(tmp_path)
    assert DEFAULT_SERIES == "6.1"
    assert find_kernel(None, boot=boot, modules=modules).name == "vmlinuz-6.1.0-57-amd64"


def test_a_release_prefix_names_the_newest_of_its_series(tmp_path: Path) -> None:
    boot, modules = _boot(tmp_path)
    assert find_kernel("6.12", boot=boot, modules=modules).name == "vmlinuz-6.12.117+deb12-amd64"
    assert find_kernel("6.1", boot=boot, modules=modules).name == "vmlinuz-6.1.0-57-amd64"
    assert find_kernel("6.1.0-9", boot=boot, modules=modules).name == "vmlinuz-6.1.0-9-amd64"


def test_an_image_without_modules_is_not_a_choice(tmp_path: Path) -> None:
    boot, modules = _boot(tmp_path)
    (boot / "vmlinuz-6.1.0-99-amd64").write_bytes(b"")
    assert "vmlinuz-6.1.0-99-amd64" not in [k.name for k in installed_kernels(boot, modules)]
    assert find_kernel(None, boot=boot, modules=modules).name == "vmlinuz-6.1.0-57-amd64"


def test_an_unknown_prefix_names_the_installed_choices(tmp_path: Path) -> None:
    boot, modules = _boot(tmp_path)
    with pytest.raises(NotFound) as err:
        find_kernel("5.10", boot=boot, modules=modules)
    message = str(err.value)
    assert "\n" not in message
    assert "installed: 6.1.0-9-amd64, 6.1.0-57-amd64, 6.12.9+deb12-amd64, 6.12.117+deb12-amd64" in (
        message
    )
    assert "--kernel" in message


def test_no_default_series_installed_is_an_error_naming_what_is(tmp_path: Path) -> None:
    boot, modules = _boot(tmp_path, ("6.12.117+deb12-amd64",))
    with pytest.raises(NotFound, match=r"no kernel 6\.1 .*installed: 6\.12\.117\+deb12-amd64"):
        find_kernel(None, boot=boot, modules=modules)


def test_a_path_is_taken_as_it_is(tmp_path: Path) -> None:
    boot, modules = _boot(tmp_path)
    image = boot / "vmlinuz-6.12.9+deb12-amd64"
    assert find_kernel(image, boot=boot, modules=modules) == image
    assert find_kernel(str(image), boot=boot, modules=modules) == image
    with pytest.raises(NotFound, match="does not exist"):
        find_kernel(str(tmp_path / "nope"), boot=boot, modules=modules)


def test_the_cli_says_which_kernels_there_are_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "knockout", "vm", "--kernel", "0.0-none", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "no kernel 0.0-none" in line and "installed: " in line


def test_guest_platforms_go_by_debians_and_knockouts_names() -> None:
    from knockout.vm._platform import ARM64, X86_64, get_platform

    assert get_platform("arm64") is get_platform("aarch64") is ARM64
    assert get_platform("amd64") is get_platform("x86_64") is X86_64
    with pytest.raises(NotFound, match="knockout boots amd64, arm64 guests"):
        get_platform("riscv64")
