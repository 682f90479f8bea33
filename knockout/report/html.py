"""The report as one self-contained HTML page (``report.html``): plots embedded.

PNG plots are embedded as ``data:`` URIs and SVG flame graphs inline (their
tooltips work), so the page opens from the file system, alone, anywhere;
links to the folded-stack files beside it are relative.  The page is valid
HTML5 (``tests/unit/test_report.py`` parses it with html5lib in strict mode).

>>> from knockout.report.model import Heading, Para
>>> page = render_html([Heading(1, "t"), Para("a < b", lead="Note:")], Path("."))
>>> "<p><strong>Note:</strong> a &lt; b</p>" in page
True
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from knockout.report.model import Block, Bullets, Code, Figure, Heading, Para, Table
from knockout.report.plots import VERDICT_COLOURS

__all__ = ["render_html"]

STYLE = """
body { font-family: sans-serif; max-width: 1240px; margin: 1em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; }
th { background: #eee; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
caption { font-style: italic; text-align: left; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 0.8em 0; }
figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
.verdict { font-weight: bold; padding: 0 0.3em; color: #fff; }
"""


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    rows = "".join(
        "<tr>"
        + "".join(f'<td class="{t.alignment(i)}">{escape(cell)}</td>' for i, cell in enumerate(row))
        + "</tr>"
        for row in t.rows
    )
    caption = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _figure(f: Figure, directory: Path) -> str:
    path = directory / f.path
    caption = f"<figcaption>{escape(f.caption)}</figcaption>"
    if f.path.endswith(".svg"):
        svg = path.read_text()
        return f"<figure>{svg}{caption}</figure>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(f.caption)}">'
        f"{caption}</figure>"
    )


def _para(p: Para) -> str:
    lead = ""
    if p.lead:
        colour = VERDICT_COLOURS.get(p.verdict or "")
        style = f' class="verdict" style="background: {colour}"' if colour else ""
        lead = f"<strong{style}>{escape(p.lead)}</strong> "
    return f"<p>{lead}{escape(p.text)}</p>"


def _block(b: Block, directory: Path) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{escape(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return _para(b)
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return _figure(b, directory)
    if isinstance(b, Code):
        return "<pre>" + escape("\n".join(b.lines)) + "</pre>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in b.items) + "</ul>"
    items = "".join(f'<li><a href="{escape(p)}">{escape(t)}</a></li>' for t, p in b.items)
    return f"<ul>{items}</ul>"


def render_html(blocks: Sequence[Block], directory: Path) -> str:
    """The blocks as one HTML page; figures are read from ``directory`` and embedded."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "knockout report")
    body = "\n".join(_block(b, directory) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
