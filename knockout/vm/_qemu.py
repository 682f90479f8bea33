"""The guest's kernel and the QEMU command line that boots it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from knockout.errors import BadInput, NotFound

__all__ = [
    "GuestConfig",
    "choose_accel",
    "default_kernel",
    "kernel_release",
    "parse_mem",
    "qemu_command",
]

#: kernel command line; ``panic=-1`` with ``-no-reboot`` turns a panic into qemu's exit
KERNEL_ARGS = ("console=ttyS0", "panic=-1", "rdinit=/init")


def kernel_release(vmlinuz: Path) -> str:
    """The release (``uname -r``) of a bzImage, read from its setup header.

    The x86 boot protocol stores at offset 0x20E a pointer (minus 0x200) to a
    NUL-terminated version string whose first word is the release.
    """
    try:
        with vmlinuz.open("rb") as f:
            head = f.read(0x10000)
    except OSError as exc:
        raise NotFound(f"cannot read kernel {vmlinuz}: {exc.strerror}; pass --kernel") from None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise BadInput(f"{vmlinuz} is not an x86 bzImage; pass a vmlinuz from /boot")
    offset = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    version = head[offset : offset + 256].split(b"\0")[0].decode(errors="replace")
    if not version:
        raise BadInput(f"{vmlinuz} has no version string; pass a vmlinuz from /boot")
    return version.split()[0]


def _release_key(release: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def default_kernel() -> Path:
    """The newest ``/boot/vmlinuz-*`` whose modules are installed."""
    found = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        release = vmlinuz.name.removeprefix("vmlinuz-")
        if Path("/lib/modules", release, "modules.dep").exists():
            found.append((_release_key(release), vmlinuz))
    if not found:
        raise NotFound("no /boot/vmlinuz-* with modules installed; run make setup")
    return max(found)[1]


def choose_accel() -> str:
    """``kvm`` when the CPU has vmx/svm and /dev/kvm is usable, else ``tcg``.

    The flags decide, not /dev/kvm alone: a nested ``kvm_pvm`` /dev/kvm exists
    on CPUs without vmx/svm and a stock kernel hangs under it.
    ``$KNOCKOUT_ACCEL`` overrides.
    """
    forced = os.environ.get("KNOCKOUT_ACCEL")
    if forced:
        return forced
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if {"vmx", "svm"} & flags and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


def parse_mem(text: str) -> str:
    """``4G``, ``512M``, ``4096`` -> QEMU's ``-m`` value; BadInput otherwise."""
    if not re.fullmatch(r"\d+[MGmg]?", text.strip()):
        raise BadInput(f"memory size {text!r} is malformed; write e.g. 4G or 512M")
    return text.strip().upper()


@dataclass(frozen=True)
class GuestConfig:
    """What a guest boots with."""

    kernel: Path
    initrd: Path
    mem: str = "4G"
    cpus: int = 2
    accel: str = "tcg"
    rwdirs: Sequence[Path] = ()
    kernel_args: Sequence[str] = field(default_factory=tuple)


def _qemu_binary() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise NotFound("qemu-system-x86_64 not found; install qemu-system-x86 (make setup)")
    return qemu


def _virtfs(tag: str, path: Path, *, readonly: bool) -> list[str]:
    ro = ",readonly=on" if readonly else ""
    return [
        "-fsdev",
        f"local,id={tag},path={path},security_model=none,multidevs=remap{ro}",
        "-device",
        f"virtio-9p-pci,fsdev={tag},mount_tag={tag}",
    ]


def qemu_command(config: GuestConfig, *, ctl_dir: Path, socket: Path, console: Path) -> list[str]:
    """The argv of ``qemu-system-x86_64`` for ``config``.

    The host's ``/`` is tag ``koroot`` and its ``/usr`` ``kousr`` (both
    read-only; the guest caches ``/usr`` loosely), ``ctl_dir`` is ``koctl``,
    the rwdirs are ``korw0``...; the serial console goes to ``console``; the
    virtio port ``knockout`` connects to the unix socket ``socket``.
    """
    cpu = "host" if config.accel == "kvm" else "max"
    cmd = [
        _qemu_binary(),
        *("-accel", config.accel, "-cpu", cpu),
        *("-smp", str(config.cpus), "-m", config.mem),
        *("-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"),
        *("-kernel", str(config.kernel), "-initrd", str(config.initrd)),
        *("-append", " ".join([*KERNEL_ARGS, *config.kernel_args])),
        *("-chardev", f"file,id=con,path={console}", "-serial", "chardev:con"),
        *_virtfs("koroot", Path("/"), readonly=True),
        *_virtfs("kousr", Path("/usr"), readonly=True),
        *_virtfs("koctl", ctl_dir, readonly=False),
    ]
    for i, rwdir in enumerate(config.rwdirs):
        cmd += _virtfs(f"korw{i}", rwdir, readonly=False)
    cmd += [
        *("-chardev", f"socket,id=ko,path={socket}"),
        *("-device", "virtio-serial-pci", "-device", "virtserialport,chardev=ko,name=knockout"),
    ]
    return cmd
