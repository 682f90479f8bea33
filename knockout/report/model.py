"""The report as blocks: headings, paragraphs, tables, figures, code, lists, links.

The content is built once (:mod:`knockout.report.content`) and rendered by
:mod:`knockout.report.markdown` and :mod:`knockout.report.html`, so the two
forms say the same thing with the same numbers.

>>> t = Table(("arm", "median"), (("baseline", "54%"),), ("l", "r"))
>>> t.align
('l', 'r')
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Block", "Bullets", "Code", "Figure", "Heading", "Links", "Para", "Table"]


@dataclass(frozen=True)
class Heading:
    """A section heading (level 1 is the title)."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph; ``lead`` is shown in bold before the text."""

    text: str
    lead: str = ""
    #: a verdict the paragraph announces (the HTML colours it)
    verdict: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of strings; ``align`` per column, ``l`` or ``r``."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = ()
    caption: str = ""

    def alignment(self, column: int) -> str:
        """``l`` or ``r`` for ``column`` (left when not given)."""
        return self.align[column] if column < len(self.align) else "l"


@dataclass(frozen=True)
class Figure:
    """A plot written beside the report: ``path`` is relative to the report's directory."""

    path: str
    caption: str


@dataclass(frozen=True)
class Code:
    """Preformatted lines (a disassembly listing)."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Bullets:
    """A list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Links:
    """Files written beside the report: (text, path relative to the report's directory)."""

    items: tuple[tuple[str, str], ...] = field(default_factory=tuple)


Block = Heading | Para | Table | Figure | Code | Bullets | Links
