"""The report as markdown (``report.md``): plots and files linked relative to it.

>>> from knockout.report.model import Heading, Table, Figure
>>> print(render_markdown([Heading(1, "t"), Table(("a", "b"), (("x|y", "1"),), ("l", "r")),
...                        Figure("w.png", "windows")]))
# t
<BLANKLINE>
| a | b |
| :--- | ---: |
| x\\|y | 1 |
<BLANKLINE>
![windows](w.png)
<BLANKLINE>
"""

from __future__ import annotations

from collections.abc import Sequence

from knockout.report.model import Block, Bullets, Code, Figure, Heading, Para, Table

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "


def _inline(text: str) -> str:
    """Plain text safe in a markdown paragraph (no accidental emphasis or HTML)."""
    out = text
    for ch in ("\\", "*", "_", "`", "<", "[", "]"):
        out = out.replace(ch, "\\" + ch)
    return out


def _table(t: Table) -> list[str]:
    rule = [":---" if t.alignment(i) == "l" else "---:" for i in range(len(t.header))]
    lines = [f"*{_inline(t.caption)}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in t.header) + " |")
    lines.append("| " + " | ".join(rule) + " |")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return lines


def _block(b: Block) -> list[str]:
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.text]
    if isinstance(b, Para):
        lead = f"**{_inline(b.lead)}** " if b.lead else ""
        return [lead + _inline(b.text)]
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return [f"![{_inline(b.caption)}]({b.path})"]
    if isinstance(b, Code):
        return ["```", *b.lines, "```"]
    if isinstance(b, Bullets):
        return [f"- {_inline(item)}" for item in b.items]
    return [f"- [{_inline(text)}]({path})" for text, path in b.items]


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as one markdown document."""
    out: list[str] = []
    for b in blocks:
        out += [*_block(b), ""]
    return "\n".join(out)
