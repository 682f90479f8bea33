"""The hot call stack of a profile: the heaviest path from the root down to where the time is spent.

``perf top`` names the hottest *leaf*; the climb needs the stack above it,
because the cost is often made upstream.  From a profile's whole stacks
(root first), :func:`hot_path` walks down from the heaviest root, at each
frame into the callee that holds most of its samples, and stops where the
frame's own time outweighs every callee: that frame is where the heat is.
Only frames the caller keeps count (the kernel's, for a kernel climb): a
stack is cut down to its run of kept frames nearest the leaf, and a sample
with none of the target's frames (``[no stack]``: user time, in a kernel
climb) is busy time but no path: shares stay fractions of all busy samples.

Each frame carries its share of all busy samples on this path and anywhere,
and the return address of its call to the frame below (from the profile's
call edges), so that the call site can be found and cut.

>>> from knockout.measure.perf import Sample
>>> from knockout.measure.profile import profile_of
>>> s = [Sample("a", 1, 1, 0, ("memset", "walk", "reclaim", "main"), (9, 0x120, 0x230, 0x340),
...             ("x",) * 4)] * 6
>>> s += [Sample("a", 1, 1, 0, ("walk", "reclaim", "main"), (0x110, 0x230, 0x340), ("x",) * 3)] * 3
>>> s += [Sample("a", 1, 1, 0, ("log", "main"), (7, 0x350), ("x",) * 2)]
>>> [(f.symbol, f.depth, round(f.path_share, 2), f.return_ip) for f in hot_path(profile_of(s))]
[('memset', 0, 0.6, None), ('walk', 1, 0.9, 288), ('reclaim', 2, 0.9, 560), ('main', 3, 1.0, 832)]
>>> s += [Sample("a", 1, 1, 0, (), (), ())] * 40  # most of the time has no frame of the target
>>> [(f.symbol, round(f.path_share, 2)) for f in hot_path(profile_of(s))][:2]
[('memset', 0.12), ('walk', 0.18)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from knockout.measure.profile import NO_STACK, Profile

__all__ = ["HotFrame", "hot_path"]


@dataclass(frozen=True)
class HotFrame:
    """One frame of the hot path, leaf first (``depth`` 0)."""

    symbol: str
    depth: int
    #: busy samples on the hot path through this frame, as a share of all busy samples
    path_share: float
    #: the frame anywhere on a stack (inclusive), and as the leaf (self)
    total: float
    self_share: float
    #: this frame's return address from its call to the frame below (None for the leaf)
    return_ip: int | None = None
    dso: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "symbol": self.symbol,
            "depth": self.depth,
            "path_share": self.path_share,
            "total": self.total,
            "self": self.self_share,
            "return_ip": self.return_ip,
            "dso": self.dso,
        }


def _trimmed(stack: tuple[str, ...], keep: Callable[[str], bool]) -> tuple[str, ...]:
    """The run of kept frames nearest the leaf (``stack`` is root first)."""
    k = len(stack)
    while k > 0 and keep(stack[k - 1]):
        k -= 1
    return stack[k:]


def hot_path(
    profile: Profile, *, keep: Callable[[str], bool] = lambda symbol: True
) -> list[HotFrame]:
    """The profile's hot path, leaf first (empty when no busy sample has a kept frame)."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for stack, n in profile.stacks.items():
        trimmed = _trimmed(stack, keep)
        if trimmed and trimmed != (NO_STACK,):
            stacks[trimmed] += n
    path: list[str] = []
    counts: list[int] = []
    while True:
        depth = len(path)
        children: Counter[str] = Counter()
        here = 0
        for stack, n in stacks.items():
            if len(stack) > depth and list(stack[:depth]) == path:
                children[stack[depth]] += n
            elif list(stack) == path:
                here += n
        if not children:
            break
        child, n = children.most_common(1)[0]
        if path and here > n:  # the frame's own time outweighs its heaviest callee
            break
        path.append(child)
        counts.append(n)
    return _frames(profile, path, counts)


def _frames(profile: Profile, path: list[str], counts: list[int]) -> list[HotFrame]:
    busy = profile.busy or 1
    out = []
    for depth, index in enumerate(range(len(path) - 1, -1, -1)):
        symbol = path[index]
        below = path[index + 1] if index + 1 < len(path) else None
        return_ip, dso = _return_site(profile, symbol, below)
        out.append(
            HotFrame(
                symbol,
                depth,
                counts[index] / busy,
                profile.total_share(symbol),
                profile.self_share(symbol),
                return_ip,
                dso,
            )
        )
    return out


def _return_site(
    profile: Profile, caller: str, callee: str | None
) -> tuple[int | None, str | None]:
    """The most common return address of ``caller``'s calls to ``callee`` on sampled stacks."""
    if callee is None:
        return None, None
    edges = [(n, e) for e, n in profile.calls.items() if e.caller == caller and e.callee == callee]
    if not edges:
        return None, None
    _, edge = max(edges, key=lambda item: item[0])
    return edge.return_ip, edge.dso
