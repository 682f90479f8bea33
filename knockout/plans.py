"""The user's own cut points: ``--points A,B,C`` and plan files (TOML) of named cuts.

A point is a spec (``shrink_slab+0x150``, ``mm/vmscan.c:431``, ``0xADDR``)
with an intent spelled as on the command line (``--set x28=0``); without
one it means "return here" (a jump to an epilogue with the same stack
state, see :mod:`knockout.search.candidates`).

A plan file names its cuts::

    [[cut]]
    name = "info NULL"
    spec = "shrink_slab+0x150"
    intent = "--set x28=0"

    [[cut]]
    spec = "shrink_slab+0x128"     # name defaults to the spec; intent to "return here"

>>> [(p.spec, p.intent) for p in parse_points("f+0x10 --set rax=0, g+0x4")]
[('f+0x10', SetReg(reg='rax', value=0)), ('g+0x4', None)]
>>> parse_plan('[[cut]]\\nname = "info NULL"\\nspec = "f+0x150"\\nintent = "--skip"\\n')[0]
Point(spec='f+0x150', intent=Skip(), name='info NULL')
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from knockout.cuts import Intent
from knockout.errors import BadInput, NotFound
from knockout.spelling import parse_intent

__all__ = ["Point", "load_plan", "parse_plan", "parse_points"]

_KEYS = frozenset({"name", "spec", "intent"})


@dataclass(frozen=True)
class Point:
    """Where to cut (a spec), how (an intent; None: return here) and what to call it."""

    spec: str
    intent: Intent | None = None
    name: str | None = None


def _point(text: str, where: str) -> Point:
    spec, _, intent = text.strip().partition(" ")
    if not spec:
        raise BadInput(f"{where}: empty point; write SPEC or SPEC INTENT, e.g. f+0x10 --skip")
    if spec.startswith("-"):
        raise BadInput(f"{where}: {text.strip()!r} starts with an intent; write the spec first")
    return Point(spec, parse_intent(intent) if intent.strip() else None)


def parse_points(text: str) -> list[Point]:
    """``--points``: comma-separated ``SPEC [INTENT]``."""
    parts = text.split(",")
    return [_point(part, f"--points item {i}") for i, part in enumerate(parts, 1)]


def parse_plan(text: str, source: str = "plan") -> list[Point]:
    """The ``[[cut]]`` tables of a TOML plan, in order."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{source}: not TOML ({exc}); see knockout.plans for the format") from None
    extra = sorted(set(data) - {"cut"})
    if extra:
        raise BadInput(f"{source}: unknown table {extra[0]!r}; a plan holds [[cut]] tables")
    cuts = data.get("cut", [])
    if not isinstance(cuts, list) or not cuts:
        raise BadInput(f'{source}: no [[cut]] tables; add one with spec = "FUNCTION+0x10"')
    return [_entry(entry, f"{source}: cut {i}") for i, entry in enumerate(cuts, 1)]


def _entry(entry: object, where: str) -> Point:
    if not isinstance(entry, dict):
        raise BadInput(f'{where} is not a table; write [[cut]] then spec = "..."')
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r}; use name, spec and intent")
    spec, name, intent = entry.get("spec"), entry.get("name"), entry.get("intent")
    if not isinstance(spec, str) or not spec.strip():
        raise BadInput(f'{where} has no spec; add spec = "FUNCTION+0x10"')
    for key, value in (("name", name), ("intent", intent)):
        if value is not None and not isinstance(value, str):
            raise BadInput(f'{where}: {key} must be a string, e.g. {key} = "--set x28=0"')
    label = f"{where} ({name or spec})"
    try:
        parsed = parse_intent(intent) if intent and intent.strip() else None
    except BadInput as exc:
        raise BadInput(f"{label}: {exc}") from None
    return Point(spec.strip(), parsed, name or spec.strip())


def load_plan(path: str | Path) -> list[Point]:
    """:func:`parse_plan` of the file at ``path``."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such plan file; check the path") from None
    except OSError as exc:
        raise NotFound(f"{path}: cannot read the plan ({exc.strerror})") from None
    return parse_plan(text, str(path))
