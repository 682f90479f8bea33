"""Reports of trials and searches: terminal text, and a directory of files.

:func:`write_report` turns a trial's or a search's document (the ``--json``
form) into ``report.md``, a self-contained ``report.html``, PNG plots,
folded stacks per arm, differential flame graphs (SVG) and ``report.json``
(the document, with what was added live: the target's description and the
annotated disassembly).  ``knockout report DIR_OR_JSON`` re-renders one from
saved JSON.  matplotlib is imported only when a report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from knockout.listing import Disassembler

__all__ = ["write_report"]

#: the files every report has, beside its plots and stacks
REPORT_FILES = ("report.md", "report.html", "report.json")


def write_report(
    doc: dict[str, Any],
    directory: str | Path,
    *,
    disassembler: Disassembler | None = None,
    target_info: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the report of ``doc`` (a trial, climb or bisect document) into ``directory``.

    ``disassembler`` reads the target's code (live): the decisive function is then
    annotated and the cuts' bytes decoded, and both are saved in ``report.json``.
    ``target_info`` (:func:`knockout.report.target.describe_process` or
    ``describe_kernel``) says what the target was.  Without them, what the document
    already holds is shown.  Returns every file written, sorted.
    """
    from knockout.report.writer import write

    return write(doc, Path(directory), disassembler=disassembler, target_info=target_info)
