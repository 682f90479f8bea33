"""The command line: the only place that prints and exits.

Each subcommand lives in ``knockout/commands/<verb>.py`` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to a
``cmd_<verb>(args) -> int``.  Library errors (:class:`KnockoutError`) become
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from knockout.errors import KnockoutError

__all__ = ["build_parser", "main"]

#: subcommand modules, in the order ``knockout --help`` lists them
COMMANDS = (
    "asm",
    "disasm",
    "points",
    "cut",
    "list",
    "revert",
    "trial",
    "climb",
    "bisect",
    "report",
    "demo",
    "vm",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with one line saying what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"knockout: error: {message} (see '{self.prog} --help')\n")


def commands_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand modules a command line needs: the one it names, else all (for help).

    Importing only the named one keeps a cold ``knockout disasm`` from loading the
    trial, report and guest machinery (about half its start-up).

    >>> commands_for(["disasm", "f", "--elf", "a.out"])
    ('disasm',)
    >>> commands_for(["--help"]) == COMMANDS
    True
    >>> commands_for(["nosuch"]) == COMMANDS  # argparse lists every choice
    True
    """
    first = next((a for a in argv if not a.startswith("-")), None)
    return (first,) if first in COMMANDS else COMMANDS


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with the subcommands ``commands`` (default: all of them)."""
    parser = _Parser(
        prog="knockout",
        description="Cut code out of a running kernel or process and measure "
        "whether the symptom goes away.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in commands:
        importlib.import_module(f"knockout.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``knockout`` and ``python -m knockout``."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands_for(args_list))
    args = parser.parse_args(args_list)
    try:
        return int(args.func(args))
    except KnockoutError as exc:
        print(f"knockout: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("knockout: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or device the library did not expect to fail
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"knockout: {exc.strerror or exc}{where}; check the path and permissions",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
