"""``knockout vm``: run a command as root in a guest booting Debian's kernel."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from knockout.errors import BadInput

__all__ = ["cmd_vm", "register"]

_EPILOG = """\
The host's / is shared read-only; each --rwdir read-write at the same path;
/tmp, /run and /var/tmp are the guest's own. An --arch other than the host's
boots over its own Debian root (writable, changes lost at poweroff), with
knockout's tree, its caches and the current directory shared read-only.
One argument after -- is shell text (sh -c); several are an argv, quoted.
The command starts in the current directory (in / if that is one of the
guest's private ones). knockout exits with the command's exit status (2 on
knockout's own errors). Only one guest runs at a time: boots wait for
/tmp/knockout-guest.lock.
"""


def register(subparsers: Any) -> None:
    """Add ``knockout vm`` to the CLI."""
    from knockout.vm import ROOT_CACHES

    p = subparsers.add_parser(
        "vm",
        help="run a command as root in a QEMU guest (Debian's kernel, host / read-only)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="guest architecture: arm64 boots Debian's arm64 kernel and userspace (prepared by "
        "make setup) under qemu-system-aarch64, knockout on PATH (default: the host's)",
    )
    p.add_argument(
        "--kernel",
        metavar="KERNEL",
        help="kernel to boot: a vmlinuz path or an installed release prefix, e.g. 6.12 or 6.1 "
        "(default: the newest Debian 6.1 in the guest's /boot)",
    )
    p.add_argument("--mem", default="4G", help="guest memory (default: 4G)")
    p.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default: 2)")
    p.add_argument(
        "--rwdir",
        action="append",
        default=[],
        metavar="DIR",
        help="share DIR read-write at the same path (repeatable)",
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="kill the guest after S seconds"
    )
    p.add_argument(
        "--perf-friendly",
        action="store_true",
        help="hide /lib/modules/$(uname -r)/kernel so perf starts fast (in-tree modprobe fails)",
    )
    p.add_argument(
        "--root-cache",
        choices=ROOT_CACHES,
        default="mmap",
        help="9p cache of the host's /: mmap (default) sees host changes at once; "
        "loose runs programs faster but may show stale files",
    )
    p.add_argument(
        "--no-pvh",
        dest="pvh",
        action="store_false",
        help="boot the bzImage through firmware and decompressor (slower; KASLR on) "
        "instead of its vmlinux through PVH",
    )
    p.add_argument(
        "--append", action="append", default=[], metavar="ARG", help="extra kernel argument"
    )
    p.add_argument(
        "--accel",
        metavar="ACCEL",
        help="QEMU accelerator, e.g. tcg, tcg,thread=single, kvm "
        "(default: kvm if the CPU flags allow, else tcg)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print the boot time and console log path"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    p.set_defaults(func=cmd_vm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _note(data: bytes) -> None:
    sys.stderr.write("knockout: " + data.decode())


def _guest_cwd(shared: list[Path]) -> str:
    """The current directory if the guest sees the host's copy of it, else ``/``."""
    cwd = os.path.realpath(os.getcwd())
    private = ("/tmp", "/run", "/var/tmp", "/proc", "/sys", "/dev")
    if any(cwd == str(d) or cwd.startswith(f"{d}/") for d in shared):
        return cwd
    if any(cwd == d or cwd.startswith(d + "/") for d in private):
        return "/"
    return cwd


def cmd_vm(args: argparse.Namespace) -> int:
    """Boot, run the command with its output streamed, power off; its status is ours."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BadInput("no command given; write e.g. knockout vm -- uname -r")
    signal.signal(signal.SIGTERM, _on_sigterm)
    from knockout.vm import GuestSession

    session = GuestSession(
        arch=args.arch,
        kernel=args.kernel,
        mem=args.mem,
        cpus=args.cpus,
        rwdirs=args.rwdir,
        perf_friendly=args.perf_friendly,
        root_cache=args.root_cache,
        pvh=args.pvh,
        kernel_args=args.append,
        accel=args.accel,
        on_wait=_note,
    )
    text = command[0] if len(command) == 1 else command
    with session:
        if args.verbose:
            up = f"guest up in {session.boot_seconds:.1f} s; console: {session.console_log}\n"
            _note(up.encode())
        cwd = _guest_cwd([*session.rwdirs, *session.rodirs])
        result = session.run(text, timeout=args.timeout, cwd=cwd, on_output=_write)
    if args.verbose:
        _note(f"command took {result.seconds:.1f} s, exit status {result.returncode}\n".encode())
    return result.returncode
