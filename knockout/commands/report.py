"""``knockout report DIR_OR_JSON [--out DIR]``: re-render a report from saved JSON.

    knockout report result.json --out report/     # a trial saved with --save
    knockout report report/                       # a --report directory, in place

The input is a trial, climb or bisect document (``--save``/``--json``) or a
report directory (its ``report.json``).  Nothing is measured and no code is
read: the report shows what the JSON holds (a report written live by
``--report`` also holds the annotated disassembly and the target's
description).  The report's modules, and matplotlib, are imported only here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["cmd_report", "register"]


def _output(source: Path, out: str | None) -> Path:
    """``--out``, else the report directory given, else ``NAME-report`` beside the JSON."""
    if out is not None:
        return Path(out)
    if source.is_dir():
        return source
    return source.with_name(source.stem + "-report")


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``knockout report``."""
    from knockout.report import write_report
    from knockout.report.load import load_document

    source = Path(args.source)
    doc = load_document(source)
    directory = _output(source, args.out)
    written = write_report(doc, directory)
    report = directory / "report.md"
    print(f"{report} ({len(written)} files in {directory})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout report``."""
    p = subparsers.add_parser(
        "report",
        help="re-render a report (markdown, HTML, plots, flame graphs) from saved JSON",
        description="Write report.md, a self-contained report.html, PNG plots, folded stacks, "
        "differential flame graphs and report.json from a saved trial, climb or bisect.",
    )
    p.add_argument(
        "source", metavar="DIR_OR_JSON", help="a JSON file saved by --save/--json, or a report dir"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write (default: the report directory given, or NAME-report/ beside "
        "the JSON file)",
    )
    p.set_defaults(func=cmd_report)
