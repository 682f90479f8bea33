"""Reading saved results back: a trial, a climb or a bisect, from its JSON.

A saved document is what ``--save`` or ``--json`` wrote, or a report's
``report.json``.  Renderers read it as a plain dict and tolerate keys they do
not know (the search grows new ones); only what a report cannot do without
is checked here.

>>> document_kind({"kind": "climb", "frames": []})
'climb'
>>> document_kind({"verdict": "gone", "windows": []})
'trial'
>>> [slug for slug, _, _ in trials_of({"kind": "bisect", "probes": [
...     {"point": "f+0x40", "trial": {"verdict": "gone", "windows": []}}, {"point": "f+0x8"}]})]
['probe-1-f-0x40']
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from knockout.errors import BadInput, NotFound

__all__ = ["Kind", "document_kind", "load_document", "slug", "trials_of"]

Kind = Literal["trial", "climb", "bisect"]

#: the file a report directory keeps its document in
REPORT_JSON = "report.json"


def load_document(path: str | Path) -> dict[str, Any]:
    """The document saved at ``path``: a JSON file, or a report directory's ``report.json``."""
    where = Path(path)
    if where.is_dir():
        where = where / REPORT_JSON
        if not where.is_file():
            raise NotFound(
                f"{path} holds no {REPORT_JSON}; name a directory written by --report "
                "or a JSON file saved by --save/--json"
            )
    try:
        text = where.read_text()
    except FileNotFoundError:
        raise NotFound(
            f"no file {where}; name a saved result (--save FILE) or a report directory"
        ) from None
    except OSError as exc:
        raise NotFound(f"cannot read {where}: {exc.strerror}; check the path") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{where} is not JSON ({exc.msg} at line {exc.lineno}); name a file saved by "
            "--save or --json"
        ) from None
    if not isinstance(doc, dict):
        raise BadInput(f"{where} holds a JSON {type(doc).__name__}, not a knockout result")
    document_kind(doc)
    return doc


def document_kind(doc: dict[str, Any]) -> Kind:
    """``trial``, ``climb`` or ``bisect``; BadInput for anything else."""
    kind = doc.get("kind")
    if kind in ("climb", "bisect"):
        return "climb" if kind == "climb" else "bisect"
    if kind is None and "verdict" in doc and "windows" in doc:
        return "trial"
    raise BadInput(
        f"not a knockout trial, climb or bisect (kind {kind!r}, keys "
        f"{', '.join(sorted(doc)[:6]) or 'none'}); save one with --save FILE or --json"
    )


def slug(text: str) -> str:
    """A file-name-safe form of ``text``.

    >>> slug("shrink_slab+0x150 (call site in shrink_node)")
    'shrink_slab-0x150-call-site-in-shrink_node'
    """
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "x"


def trials_of(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each trial the document holds: (file prefix, heading, trial document), in order."""
    kind = document_kind(doc)
    if kind == "trial":
        return [("trial", "the trial", doc)]
    out = []
    if kind == "climb":
        for i, frame in enumerate(doc.get("frames") or []):
            trial = frame.get("trial")
            if isinstance(trial, dict):
                name = str(frame.get("symbol", "?"))
                out.append((f"frame-{i}-{slug(name)}", f"frame {i}: {name}", trial))
        return out
    for i, probe in enumerate(doc.get("probes") or [], start=1):
        trial = probe.get("trial")
        if isinstance(trial, dict):
            point = str(probe.get("point", "?"))
            out.append((f"probe-{i}-{slug(point)}", f"probe {i}: {point}", trial))
    return out
