"""The guest's kernel and the QEMU command line that boots it."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from knockout.errors import BadInput, NotFound
from knockout.vm._initramfs import cache_dir
from knockout.vm._platform import X86_64, GuestPlatform

__all__ = [
    "GuestConfig",
    "choose_accel",
    "kernel_release",
    "parse_mem",
    "pvh_vmlinux",
    "qemu_command",
]

#: kernel command line after ``console=``; ``panic=-1`` with ``-no-reboot`` turns a panic
#: into qemu's exit
KERNEL_ARGS = ("panic=-1", "rdinit=/init")


def kernel_release(vmlinuz: Path) -> str:
    """The release (``uname -r``) of a kernel image: an x86 bzImage or an arm64 Image.

    The x86 boot protocol stores at offset 0x20E a pointer (minus 0x200) to a
    NUL-terminated version string whose first word is the release.  An arm64
    Image (magic ``ARM\\x64`` at 0x38) is not compressed: its ``linux_banner``
    (``Linux version <release> (...``) is read from the image itself.
    """
    try:
        with vmlinuz.open("rb") as f:
            head = f.read(0x10000)
    except OSError as exc:
        raise NotFound(f"cannot read kernel {vmlinuz}: {exc.strerror}; pass --kernel") from None
    if head[0x38:0x3C] == ARM64_IMAGE_MAGIC:
        return _banner_release(vmlinuz)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise BadInput(
            f"{vmlinuz} is neither an x86 bzImage nor an arm64 Image; pass a vmlinuz from /boot"
        )
    offset = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    version = head[offset : offset + 256].split(b"\0")[0].decode(errors="replace")
    if not version:
        raise BadInput(f"{vmlinuz} has no version string; pass a vmlinuz from /boot")
    return version.split()[0]


#: the arm64 Image header's magic (Documentation/arch/arm64/booting.rst)
ARM64_IMAGE_MAGIC = b"ARM\x64"
_BANNER = re.compile(rb"Linux version (\d+\.\d+[^\s\0]*) \(")


def _banner_release(image: Path) -> str:
    found = _BANNER.search(image.read_bytes())
    if found is None:
        raise BadInput(f"{image} has no Linux version banner; pass an uncompressed arm64 Image")
    return found.group(1).decode()


#: the ELF note (owner ``Xen``, type ``XEN_ELFNOTE_PHYS32_ENTRY``) QEMU needs
#: to boot an uncompressed vmlinux through PVH
_PVH_NOTE_TYPE = 18


def _payload(vmlinuz: Path) -> bytes:
    """The compressed vmlinux inside a bzImage (boot protocol >= 2.08)."""
    image = vmlinuz.read_bytes()
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return image[start : start + length]


def _decompress(payload: bytes) -> bytes | None:
    """The payload decompressed, or None for a compression this does not know."""
    if payload.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        return gzip.decompress(payload)
    zstd = shutil.which("zstd")
    if payload.startswith(b"\x28\xb5\x2f\xfd") and zstd:
        return subprocess.run([zstd, "-dc"], input=payload, capture_output=True).stdout
    return None


def _has_pvh_note(elf: bytes) -> bool:
    """True if a 64-bit little-endian ELF has the PVH entry note."""
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, phentsize, phnum = (*struct.unpack_from("<Q", elf, 0x20), elf[0x36], elf[0x38])
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == _PVH_NOTE_TYPE:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def pvh_vmlinux(vmlinuz: Path) -> Path | None:
    """The uncompressed vmlinux of ``vmlinuz``, cached, if QEMU can boot it via PVH.

    PVH boot skips the firmware, the real-mode setup and the in-guest
    decompressor (about 3 s of a 6.5 s boot under TCG); the kernel then runs
    at its link address (no KASLR).  None if the kernel lacks CONFIG_PVH or
    uses a compression this cannot undo.
    """
    st = vmlinuz.stat()
    key = hashlib.sha256(f"{vmlinuz.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    out = cache_dir() / "vmlinux" / f"{vmlinuz.name}-{key.hexdigest()[:16]}.elf"
    if out.exists():
        return out
    no_pvh = out.with_suffix(".no-pvh")
    if no_pvh.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    elf = _decompress(_payload(vmlinuz))
    if elf is None or not _has_pvh_note(elf):
        no_pvh.touch()
        return None
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(elf)
    tmp.replace(out)
    return out


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


def patching_accel() -> str:
    """:func:`choose_accel` for a guest whose kernel text is patched while it runs: kvm, or
    single-thread TCG.

    Multi-threaded TCG does not give x86's cross-modifying-code guarantee: a
    vCPU can go on running a stale translation of code another vCPU rewrote.
    Seen with the kernel's own patching, knockout not loaded (toggling the
    sched_schedstats static key: both vCPUs locked up on a jmp within a few
    hundred toggles; single-thread TCG: 19 536 toggles, dmesg clean; see
    tests/vm/test_kernel_cut.py's stress test), and in the demo: a storm
    worker's call to mem_cgroup_iter went to address 0 just after the climb's
    kprobes (ftrace-based) were removed.  One TCG thread still runs every vCPU,
    interleaved, and executes exactly what is in memory.
    """
    accel = choose_accel()
    if accel == "tcg":
        return "tcg,thread=single"
    return accel


def parse_mem(text: str) -> str:
    """``4G``, ``512M``, ``4096`` -> QEMU's ``-m`` value; BadInput otherwise."""
    if not re.fullmatch(r"\d+[MGmg]?", text.strip()):
        raise BadInput(f"memory size {text!r} is malformed; write e.g. 4G or 512M")
    return text.strip().upper()


@dataclass(frozen=True)
class GuestConfig:
    """What a guest boots with; ``kernel`` is a bzImage, a PVH vmlinux or an arm64 Image."""

    kernel: Path
    initrd: Path
    mem: str = "4G"
    cpus: int = 2
    accel: str = "tcg"
    rwdirs: Sequence[Path] = ()
    #: host directories the guest's own tmpfs mounts would hide, shared read-only
    rodirs: Sequence[Path] = ()
    kernel_args: Sequence[str] = field(default_factory=tuple)
    platform: GuestPlatform = X86_64
    #: the guest's ``/``: the host's, or a root prepared for another architecture
    root: Path = Path("/")
    #: share ``root`` read-write (only to prepare a root); otherwise read-only
    root_writable: bool = False


def _qemu_binary(platform: GuestPlatform) -> str:
    qemu = shutil.which(platform.qemu)
    if qemu is None:
        raise NotFound(f"{platform.qemu} not found; install {platform.qemu_package} (make setup)")
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
    """The argv of ``qemu-system-<arch>`` for ``config``.

    The guest's root (``config.root``) is tag ``koroot``; when that is the
    host's ``/``, its ``/usr`` is also ``kousr`` (the guest caches ``/usr``
    loosely); ``ctl_dir`` is ``koctl``, the rwdirs are ``korw0``..., the
    rodirs ``koro0``...; the serial console goes to ``console``; the virtio
    port ``knockout`` connects to the unix socket ``socket``.
    """
    platform = config.platform
    cpu = "host" if config.accel == "kvm" else platform.tcg_cpu
    args = [f"console={platform.console}", *KERNEL_ARGS, *config.kernel_args]
    cmd = [
        _qemu_binary(platform),
        *(("-M", platform.machine) if platform.machine else ()),
        *("-accel", config.accel, "-cpu", cpu),
        *("-smp", str(config.cpus), "-m", config.mem),
        *("-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"),
        *("-kernel", str(config.kernel), "-initrd", str(config.initrd)),
        *("-append", " ".join(args)),
        *("-chardev", f"file,id=con,path={console}", "-serial", "chardev:con"),
        *_virtfs("koroot", config.root, readonly=not config.root_writable),
    ]
    if config.root == Path("/"):
        cmd += _virtfs("kousr", Path("/usr"), readonly=True)
    cmd += _virtfs("koctl", ctl_dir, readonly=False)
    for i, rwdir in enumerate(config.rwdirs):
        cmd += _virtfs(f"korw{i}", rwdir, readonly=False)
    for i, rodir in enumerate(config.rodirs):
        cmd += _virtfs(f"koro{i}", rodir, readonly=True)
    cmd += [
        *("-chardev", f"socket,id=ko,path={socket}"),
        *("-device", "virtio-serial-pci", "-device", "virtserialport,chardev=ko,name=knockout"),
    ]
    return cmd
