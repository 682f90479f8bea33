"""The guest: Debian's kernel booted in QEMU over the host's read-only ``/``.

``run_in_guest(command)`` boots, runs one command as root and powers off;
:class:`GuestSession` keeps one guest up for many commands.  The host's ``/``
is shared read-only over 9p, ``rwdirs`` read-write at the same paths; /tmp,
/run and /var/tmp are the guest's own tmpfs.  One guest at a time: every boot
holds an exclusive flock on :data:`LOCK_PATH`.
"""

from __future__ import annotations

from knockout.vm._initramfs import build_initramfs, cache_dir
from knockout.vm._qemu import choose_accel, default_kernel, kernel_release, pvh_vmlinux
from knockout.vm._session import (
    LOCK_PATH,
    ROOT_CACHES,
    GuestResult,
    GuestSession,
    GuestTimeout,
    run_in_guest,
)

__all__ = [
    "LOCK_PATH",
    "ROOT_CACHES",
    "GuestResult",
    "GuestSession",
    "GuestTimeout",
    "build_initramfs",
    "cache_dir",
    "choose_accel",
    "default_kernel",
    "kernel_release",
    "pvh_vmlinux",
    "run_in_guest",
]
