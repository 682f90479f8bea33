"""Writing results to files: checked before the work starts, written whole or not at all.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> check_writable(os.path.join(d, "r.json")); save_json(os.path.join(d, "r.json"), {"a": 1})
>>> open(os.path.join(d, "r.json")).read()
'{\\n  "a": 1\\n}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from knockout.errors import BadInput, Refused

__all__ = ["check_writable", "save_json", "save_text"]


def check_writable(path: str | Path) -> None:
    """Refuse, before any work, a ``path`` that cannot be written: one line saying why."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise BadInput(f"{target} is a directory; name a file, e.g. {target}/result.json")
    if not parent.is_dir():
        raise BadInput(f"cannot save to {target}: no directory {parent}; create it first")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise Refused(f"cannot save to {target}: permission denied; pick a writable place")


def save_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600: a saved result is for colleagues too
        os.replace(tmp, target)
    except OSError as exc:
        raise Refused(f"cannot save to {target}: {exc.strerror}; pick a writable place") from None


def save_json(path: str | Path, doc: Any) -> None:
    """``doc`` as indented JSON in ``path``, atomically."""
    save_text(path, json.dumps(doc, indent=2) + "\n")
