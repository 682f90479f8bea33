"""``--pid PID | --kernel``: choosing the target of ``cut``, ``list`` and ``revert``.

Each kind of target has one opener here, ``open_<kind>(args) -> Target``,
registered in :data:`OPENERS`.  The kernel target adds its own opener; the
process one is :func:`open_process`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from knockout.commands._cutopts import parse_int
from knockout.commands._kernel import open_kernel
from knockout.errors import BadInput
from knockout.targets import Target

__all__ = ["OPENERS", "add_target_options", "open_process", "open_target", "target_kind"]


def _pid(text: str) -> int:
    pid = parse_int(text)
    if pid <= 0:
        raise BadInput(f"--pid takes a positive process id; got {text!r}")
    return pid


def add_target_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add the mutually exclusive ``--pid PID`` and ``--kernel`` options."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--pid", metavar="PID", help="a running process")
    group.add_argument("--kernel", action="store_true", help="the running kernel")


def target_kind(args: argparse.Namespace) -> str | None:
    """``"process"``, ``"kernel"`` or None when neither option was given."""
    if args.pid is not None:
        args.pid = _pid(str(args.pid))
        return "process"
    return "kernel" if args.kernel else None


def open_process(args: argparse.Namespace) -> Target:
    """The process ``--pid`` names."""
    from knockout.targets.process import ProcessTarget

    return ProcessTarget(args.pid)


#: kind -> opener; the kernel target registers ``"kernel"`` here
OPENERS: dict[str, Callable[[argparse.Namespace], Target]] = {
    "process": open_process,
    "kernel": open_kernel,
}


def open_target(args: argparse.Namespace) -> Target:
    """The target the options name."""
    kind = target_kind(args)
    if kind is None:
        raise BadInput("name a target: --pid PID or --kernel")
    opener = OPENERS.get(kind)
    if opener is None:
        raise BadInput(f"this build of knockout cannot cut the {kind} yet; use --pid PID")
    return opener(args)
