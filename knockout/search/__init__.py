"""Searching for the cause: the cut points of a function, for ``knockout bisect`` and ``climb``.

The API:

``candidates(target, function_spec, *, kinds=KINDS, return_value=None, refuse=None, elf=None)``
    Every cut point of one function, in program order, as :class:`Candidate`
    values: ``return V`` at the entry, "return at P" (a jump to an epilogue
    with P's stack state, from the unwind tables), each call skipped, each
    conditional branch forced either way, each load that decides a branch
    forced to 0.  Each is planned by :mod:`knockout.plan` against the
    target (its bytes and the way it writes cuts); a point the planner or
    the caller's deny rule refuses is in the list with ``refused`` set and
    ``cut`` None -- never dropped.  ``target`` is anything with ``arch``,
    ``description``, ``read``, ``symbols`` and ``code_style`` (a
    :class:`~knockout.targets.process.ProcessTarget`, a
    :class:`~knockout.targets.kernel.KernelTarget`, an :class:`ElfCode`).

``return_points(target, function_spec, *, return_value=None, refuse=None, elf=None)``
    The bisect's points: the entry, then "return at P" at every
    instruction, in program order (probe the ``planned`` ones).

``plan_point(target, spec, intent=None, ...)`` / ``plan_points(target, points, ...)``
    The user's own points (``--points A,B,C``, a plan file:
    :func:`knockout.plans.parse_points`, :func:`knockout.plans.load_plan`),
    planned the same way; no intent means "return here".

``Candidate(kind, address, location, intent, cut, refused, source, text, name)``
    ``kind`` is one of entry, return-at, load, skip-call, branch-taken,
    branch-not-taken (or set, skip, bytes, aa for a user's point);
    ``source`` the DWARF line; ``text`` one line saying what the cut does.

``refuse(symbol, address) -> str | None``
    The deny hook: a reason refuses the point (for a call site it is also
    asked about the callee, whose cut the skip amounts to), e.g.
    ``DenyRules.builtin("kernel").predicate()``.

``return_value``
    V for the entry and the "return at P" points: an int, ``"void"`` (the
    return register is left alone), or None: from the DWARF return type
    (pointer -> NULL, integer -> 0, void -> none; 0 without DWARF).

>>> from knockout.search import KINDS
>>> KINDS
('entry', 'return-at', 'load', 'skip-call', 'branch')
"""

from __future__ import annotations

# eager: the function candidates must not be shadowed by the module of that name
from knockout.search.candidates import (
    KINDS,
    Candidate,
    Refuse,
    ReturnValue,
    candidates,
    kind_of,
    plan_point,
    plan_points,
    return_points,
)
from knockout.search.elfcode import ElfCode
from knockout.search.return_type import ReturnType, return_type

__all__ = [
    "KINDS",
    "Candidate",
    "ElfCode",
    "Refuse",
    "ReturnType",
    "ReturnValue",
    "candidates",
    "kind_of",
    "plan_point",
    "plan_points",
    "return_points",
    "return_type",
]
