"""The guest: Debian's kernel booted in QEMU over the host's read-only ``/``.

``run_in_guest(command)`` boots, runs one command as root and powers off;
:class:`GuestSession` keeps one guest up for many commands.  The host's ``/``
is shared read-only over 9p (changes on the host show at once; ``/usr`` is
cached), ``rwdirs`` read-write at the same paths; /tmp, /run, /var/tmp and
/dev/shm are the guest's own tmpfs; proc, sysfs, devtmpfs, cgroup2, debugfs
and tracefs are mounted.  The kernel's vmlinux is booted through PVH when it
can be (no firmware, no decompressor: about 3 s to the first command under
TCG).  One guest at a time: every boot holds an exclusive flock on
:data:`LOCK_PATH`, which QEMU inherits, until QEMU has exited.

How it works: a small busybox initramfs (:func:`build_initramfs`) loads the
virtio/9p modules, mounts everything, and serves commands read from a virtio
serial port connected to a unix socket on the host; each command's output
streams back on that port, ended by a marker with its exit status.
"""

from __future__ import annotations

from knockout.vm._initramfs import build_initramfs, cache_dir
from knockout.vm._kernels import (
    DEFAULT_SERIES,
    default_kernel,
    find_kernel,
    installed_kernels,
)
from knockout.vm._qemu import choose_accel, kernel_release, patching_accel, pvh_vmlinux
from knockout.vm._session import (
    LOCK_PATH,
    ROOT_CACHES,
    GuestResult,
    GuestSession,
    GuestTimeout,
    run_in_guest,
)

__all__ = [
    "DEFAULT_SERIES",
    "LOCK_PATH",
    "ROOT_CACHES",
    "GuestResult",
    "GuestSession",
    "GuestTimeout",
    "build_initramfs",
    "cache_dir",
    "choose_accel",
    "default_kernel",
    "find_kernel",
    "installed_kernels",
    "kernel_release",
    "patching_accel",
    "pvh_vmlinux",
    "run_in_guest",
]
