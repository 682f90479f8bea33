"""The guest runner itself: boot, run, status, output, rwdir, read-only root, failures.

Boots: one shared guest (fixture ``guest``) for most tests, one by the CLI
test, one for the panic test.  Order matters: the timeout test kills the
shared guest, so it comes after the tests that use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knockout.errors import BadInput, TargetGone
from knockout.vm import (
    GuestSession,
    GuestTimeout,
    build_initramfs,
    cache_dir,
    choose_accel,
    default_kernel,
    find_kernel,
    installed_kernels,
    kernel_release,
    pvh_vmlinux,
    run_in_guest,
)
from tests.vm.conftest import Guest

REPO = Path(__file__).resolve().parents[2]


# -- no boot ---------------------------------------------------------------


def test_kernel_release_matches_installed_modules() -> None:
    vmlinuz = default_kernel()
    release = kernel_release(vmlinuz)
    assert vmlinuz.name == f"vmlinuz-{release}"
    assert Path("/lib/modules", release, "modules.dep").exists()


def test_default_is_debians_61_even_beside_a_newer_series() -> None:
    installed = [k.name.removeprefix("vmlinuz-") for k in installed_kernels()]
    default = kernel_release(default_kernel())
    assert default.startswith("6.1."), f"default {default} among {installed}"
    assert default == [r for r in installed if r.startswith("6.1.")][-1]
    newer = [r for r in installed if not r.startswith("6.1.")]
    for release in newer:  # 6.12 when mk/kernels.mk installed it: reachable by its prefix
        series = ".".join(release.split(".")[:2])
        assert kernel_release(find_kernel(series)).startswith(series + ".")


def test_accel_follows_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = Path("/proc/cpuinfo").read_text().split()
    expected = "kvm" if {"vmx", "svm"} & set(flags) and os.access("/dev/kvm", os.W_OK) else "tcg"
    monkeypatch.delenv("KNOCKOUT_ACCEL", raising=False)
    assert choose_accel() == expected
    monkeypatch.setenv("KNOCKOUT_ACCEL", "tcg")
    assert choose_accel() == "tcg"


def test_accel_option_is_checked_and_kept() -> None:
    assert GuestSession().accel is None  # chosen at boot by choose_accel()
    assert GuestSession(accel="tcg,thread=single").accel == "tcg,thread=single"
    for bad in ("qemu", "tcg;reboot", "tcg,thread", "kvm -s"):
        with pytest.raises(BadInput, match="not a QEMU accelerator"):
            GuestSession(accel=bad)


def test_pvh_vmlinux_is_the_kernels_elf() -> None:
    vmlinuz = default_kernel()
    vmlinux = pvh_vmlinux(vmlinuz)
    assert vmlinux is not None, "Debian's amd64 kernel has CONFIG_PVH=y"
    head = vmlinux.read_bytes()[:4]
    assert head == b"\x7fELF"
    assert pvh_vmlinux(vmlinuz) == vmlinux  # cached


def test_initramfs_is_a_cpio_the_cpio_tool_reads(tmp_path: Path) -> None:
    release = kernel_release(default_kernel())
    image = build_initramfs(release, tmp_path)
    assert build_initramfs(release, tmp_path) == image  # cached: same key, no rebuild
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=image.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    names = set(listing.split())
    assert {"init", "bin/busybox", "dev/console", "modules/order", "modules/9p.ko"} <= names


# -- the shared guest ------------------------------------------------------


def test_runs_debians_kernel(guest: Guest) -> None:
    result = guest.run("uname -r; id -u")
    release, uid = result.output.split()
    assert release == kernel_release(default_kernel())
    assert release.startswith("6.1.")
    assert uid == "0"
    assert guest.session.boot_image.suffix == ".elf"  # booted through PVH
    print(f"\nguest boot: {guest.boot_seconds[-1]:.2f} s to the first command")


def test_exit_status_and_both_streams(guest: Guest) -> None:
    result = guest.run("echo to-out; echo to-err >&2; exit 7", check=False)
    assert result.returncode == 7
    assert result.output == "to-out\nto-err\n"
    assert guest.run(["printf", "%s|", "a b", "$HOME"]).output == "a b|$HOME|"


def test_rwdir_writes_come_back(guest: Guest) -> None:
    target = guest.rwdir / "from-guest.txt"
    target.unlink(missing_ok=True)
    guest.run(f"uname -r > {target}")
    assert target.read_text().strip() == guest.release
    target.unlink()


def test_host_root_is_read_only(guest: Guest) -> None:
    probe = REPO / "knockout-ro-probe"
    result = guest.run(f"touch {probe}", check=False)
    assert result.returncode != 0
    assert "Read-only file system" in result.output
    assert not probe.exists()
    assert (
        guest.run(f"cat {REPO / 'pyproject.toml'}").output == (REPO / "pyproject.toml").read_text()
    )


def test_host_changes_show_at_once(guest: Guest) -> None:
    probe_dir = cache_dir() / "coherence-probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    probe = probe_dir / "file"
    try:
        probe.write_text("one\n")
        assert guest.run(f"cat {probe}").output == "one\n"
        probe.write_text("two, longer\n")  # in place
        assert guest.run(f"cat {probe}").output == "two, longer\n"
        (probe_dir / "new").write_text("three\n")
        (probe_dir / "new").replace(probe)  # a new inode, as a rebuild makes
        assert guest.run(f"cat {probe}").output == "three\n"
    finally:
        shutil.rmtree(probe_dir)


def test_private_writable_places(guest: Guest) -> None:
    for place in ("/tmp", "/run", "/var/tmp", "/dev/shm"):
        guest.run(f"echo x > {place}/knockout-probe && rm {place}/knockout-probe")
    assert not Path("/tmp/knockout-probe").exists()


def test_modprobe_and_dmesg_work(guest: Guest) -> None:
    guest.run("modprobe brd rd_nr=1 rd_size=1024 && test -b /dev/ram0 && rmmod brd")
    assert any("Linux version" in line for line in guest.dmesg())
    guest.assert_dmesg_clean()


def test_timeout_kills_the_guest_and_says_so(guest: Guest) -> None:
    session = guest.session
    started = time.monotonic()
    with pytest.raises(GuestTimeout, match=r"did not finish in time.*raise the timeout"):
        session.run("sleep 60", timeout=3)
    assert time.monotonic() - started < 20
    assert not session.alive
    console = session.console_log.read_text(errors="replace")
    assert "Show Blocked State" in console  # what a hung command waited on, dumped first


# -- their own boots -------------------------------------------------------


def test_cli_exit_status_rwdir_and_perf_friendly(guest: Guest, tmp_path: Path) -> None:
    guest.close()  # the CLI takes the guest lock itself
    command = f"ls /lib/modules/$(uname -r)/kernel | wc -l; echo done > {tmp_path}/cli.txt; exit 5"
    cli = [sys.executable, "-m", "knockout", "vm", "--perf-friendly", "--rwdir", str(tmp_path)]
    proc = subprocess.run(
        [*cli, "--", command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == "0\n"
    assert (tmp_path / "cli.txt").read_text() == "done\n"


def test_panic_ends_qemu_with_the_console_tail() -> None:
    with pytest.raises(
        TargetGone, match=r"guest died during command.*: Kernel panic - not syncing: sysrq"
    ):
        run_in_guest("echo c > /proc/sysrq-trigger; sleep 60", timeout=120)


def test_boot_timeout_is_an_error() -> None:
    session = GuestSession(boot_timeout=0.5)
    with pytest.raises(GuestTimeout, match="did not"):
        session.start()
    assert not session.alive
