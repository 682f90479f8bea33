"""``--pid PID | --kernel``: choosing the target of ``cut``, ``trial``, ``list`` and ``revert``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from knockout.errors import BadInput
from knockout.spelling import parse_int
from knockout.targets import Target

if TYPE_CHECKING:
    from knockout.search.deny import DenyRules

__all__ = [
    "DEFAULT_TTL",
    "SearchTarget",
    "add_search_target_options",
    "add_target_options",
    "open_target",
    "search_rules",
    "target_kind",
]

#: seconds a kernel cut outlives a knockout that died without reverting it
DEFAULT_TTL = 5.0


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


def open_target(args: argparse.Namespace) -> Target:
    """The target the options name; ``--ttl`` is the dead-man switch of kernel cuts."""
    kind = target_kind(args)
    if kind == "process":
        from knockout.targets.process import ProcessTarget

        return ProcessTarget(args.pid)
    if kind == "kernel":
        from knockout.targets.kernel import KernelTarget

        ttl = getattr(args, "ttl", None)
        return KernelTarget(ttl=DEFAULT_TTL if ttl is None else float(ttl))
    raise BadInput("name a target: --pid PID or --kernel")


def add_search_target_options(p: argparse.ArgumentParser) -> None:
    """``--pid PID | --kernel`` plus ``--run CMD`` and ``--deny FILE`` (climb, bisect)."""
    add_target_options(p, required=False)
    p.add_argument(
        "--run",
        metavar="CMD",
        help="start the target with CMD (restarted when a cut crashes it; with --pid a crash "
        "ends the search)",
    )
    p.add_argument("--deny", metavar="FILE", help="more deny rules: 'REGEX reason' per line")


class SearchTarget:
    """The target a search runs on: opened from ``--pid``/``--kernel``, or started by ``--run``.

    A context manager: on the way out the target is closed (and a started
    process stopped).  :attr:`restart` is set only for a started process.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        if (args.run is not None) + (args.pid is not None) + bool(args.kernel) != 1:
            raise BadInput("name one target: --pid PID, --run 'CMD' or --kernel")
        self.restart: Callable[[], Target] | None = None
        self._close: Callable[[], None]
        if args.run is not None:
            from knockout.targets.launched import Launched

            launched = Launched(args.run)
            self.restart, self._close = launched.restart, launched.close
            self._current: Callable[[], Target] = lambda: launched.target
        else:
            target = open_target(args)
            self._close, self._current = target.close, lambda: target

    @property
    def target(self) -> Target:
        """The target now (a restarted process is a new one)."""
        return self._current()

    def __enter__(self) -> SearchTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()


def search_rules(args: argparse.Namespace, target: Target) -> DenyRules:
    """The built-in deny rules of the target's kind, plus ``--deny FILE``."""
    from knockout.search.deny import DenyRules

    rules = DenyRules.builtin("kernel" if target.abilities.kernel_text else "process")
    deny = getattr(args, "deny", None)
    return rules.with_file(deny) if deny else rules
