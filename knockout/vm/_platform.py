"""What a guest of each architecture boots with: QEMU, machine, CPU, console, root.

A guest of the host's own architecture shares the host's ``/`` (read-only,
over 9p).  A guest of another architecture cannot run the host's programs:
it boots over a root prepared for it by ``make setup`` (Debian's own
userspace for that architecture, debootstrapped, with its kernel and a
Python venv of knockout's dependencies), shared read-only under a tmpfs
overlay so it is writable inside as on a real machine, and the knockout tree
of the clone that booted it is shared read-only at its own path.

The QEMU choices per architecture:

- x86_64: the default PC machine, ``-cpu max`` under TCG (``host`` under
  KVM), the 8250 UART (``ttyS0``), PVH boot of the vmlinux when it can.
- arm64: ``-M virt`` with GICv3 (what arm64 servers have), the PL011 UART
  (``ttyAMA0``), the Image booted directly (no firmware).  The CPU under TCG
  is ``max``: it implements pointer authentication and BTI, which Debian's
  6.1 arm64 kernel uses (``CONFIG_ARM64_PTR_AUTH_KERNEL``,
  ``CONFIG_ARM64_BTI_KERNEL``), so function entries really are ``paciasp``
  / ``bti c`` landing pads that the planner must keep and a signed return
  address really faults if a cut returns without ``autiasp`` -- as on
  Neoverse V2 / Graviton 4 class machines.  A named CPU without them
  (``neoverse-n1``, ``cortex-a72``: the seed's generation, where those
  instructions are NOPs) would hide such mistakes.  ``pauth-impdef=on``
  makes QEMU sign with a cheap implementation-defined algorithm instead of
  QARMA5, which is several times slower under TCG; the instructions and
  their faults are the same.
"""

from __future__ import annotations

import os
import platform as _host
from dataclasses import dataclass
from pathlib import Path

from knockout.errors import NotFound

__all__ = [
    "ARM64",
    "PLATFORMS",
    "X86_64",
    "GuestPlatform",
    "get_platform",
    "host_platform",
    "prepared_root",
    "prepared_root_dir",
]


@dataclass(frozen=True)
class GuestPlatform:
    """One guest architecture as QEMU and Debian see it."""

    #: knockout's name of the ISA (:func:`knockout.arch.get_arch`), and the others it goes by
    arch: str
    aliases: tuple[str, ...]
    #: Debian's name of the architecture (``dpkg --print-architecture``)
    debian_arch: str
    #: ``qemu-system-*`` binary and the Debian package that has it
    qemu: str
    qemu_package: str
    #: ``-M`` value, or None for QEMU's default machine
    machine: str | None
    #: ``-cpu`` under TCG
    tcg_cpu: str
    #: the serial console's kernel name
    console: str
    #: whether the kernel may be booted as a PVH vmlinux (x86 only)
    pvh: bool


X86_64 = GuestPlatform(
    arch="x86_64",
    aliases=("x86_64", "amd64", "x86-64", "x64"),
    debian_arch="amd64",
    qemu="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    machine=None,
    tcg_cpu="max",
    console="ttyS0",
    pvh=True,
)

ARM64 = GuestPlatform(
    arch="aarch64",
    aliases=("aarch64", "arm64"),
    debian_arch="arm64",
    qemu="qemu-system-aarch64",
    qemu_package="qemu-system-arm",
    machine="virt,gic-version=3",
    tcg_cpu="max,pauth-impdef=on",
    console="ttyAMA0",
    pvh=False,
)

#: every guest architecture, by knockout's ISA name
PLATFORMS = {p.arch: p for p in (X86_64, ARM64)}


def get_platform(arch: str | None = None) -> GuestPlatform:
    """The guest platform for ``arch`` (any alias: ``arm64``, ``aarch64``...; None: the host's).

    >>> get_platform("arm64").qemu
    'qemu-system-aarch64'
    >>> get_platform("amd64").console
    'ttyS0'
    """
    wanted = (_host.machine() if arch is None else arch).lower()
    for entry in PLATFORMS.values():
        if wanted in entry.aliases:
            return entry
    known = ", ".join(p.debian_arch for p in PLATFORMS.values())
    raise NotFound(f"no guest platform for {wanted}; knockout boots {known} guests")


def host_platform() -> GuestPlatform:
    """The platform of the machine this runs on."""
    return get_platform(None)


#: where ``make setup`` (mk/arm64.mk) prepares the root of a guest of another architecture
PREPARED_ROOT_BASE = Path("/var/cache/knockout")
#: the file a complete prepared root has (written last by knockout.vm.guestroot)
ROOT_STAMP = ".knockout-root"


def prepared_root_dir(platform: GuestPlatform) -> Path:
    """Where the prepared root of ``platform`` is, built or not.

    ``$KNOCKOUT_<ARCH>_ROOT`` (e.g. ``KNOCKOUT_ARM64_ROOT``) overrides
    ``/var/cache/knockout/<debian arch>/root``.
    """
    env = f"KNOCKOUT_{platform.debian_arch.upper()}_ROOT"
    return Path(os.environ.get(env) or PREPARED_ROOT_BASE / platform.debian_arch / "root")


def prepared_root(platform: GuestPlatform) -> Path | None:
    """The prepared root for ``platform``, or None when the guest shares the host's ``/``.

    Raises :class:`NotFound` when it has not been built (its stamp is missing).
    """
    if platform is host_platform():
        return None
    root = prepared_root_dir(platform)
    if not (root / ROOT_STAMP).is_file():
        raise NotFound(
            f"no {platform.debian_arch} guest root at {root}; run make setup "
            f"(mk/{platform.debian_arch}.mk builds it)"
        )
    return root
