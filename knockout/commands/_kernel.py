"""``--kernel`` for ``cut``, ``list`` and ``revert``: the kernel target's CLI hooks.

Registered in :data:`knockout.commands._target.OPENERS`,
:data:`knockout.commands.list.LISTERS` and
:data:`knockout.commands.revert.REVERTERS`.  The kernel target is imported
only when ``--kernel`` is used (or, for ``list``/``revert`` without a target,
when knockout's module is loaded).
"""

from __future__ import annotations

import argparse

from knockout.targets import Target

__all__ = ["kernel_rows", "open_kernel", "revert_kernel"]

#: seconds a kernel cut outlives a knockout that died without reverting it
DEFAULT_TTL = 5.0


def open_kernel(args: argparse.Namespace) -> Target:
    """The running kernel; ``--ttl`` is the dead-man switch of its cuts."""
    from knockout.targets.kernel import KernelTarget

    ttl = getattr(args, "ttl", None)
    return KernelTarget(ttl=DEFAULT_TTL if ttl is None else float(ttl))


def kernel_rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """One row per cut knockout's module holds (none when it is not loaded)."""
    from knockout.targets.kernel import Control, kernel_release, module_loaded

    if not module_loaded():
        return []
    with Control() as control:
        cuts = control.listing()
    return [
        {
            "kind": "kernel",
            "id": c.id,
            "target": f"kernel {kernel_release()}",
            "address": f"{c.address:#x}",
            "location": c.location.split("/")[0],
            "intent": "",
            "old": c.old.hex(),
            "new": c.new.hex(),
            "state": "stuck (bytes changed under it)" if c.state == "stuck" else "in place",
            "holder": f"reverts itself in {c.ttl:.1f} s unless renewed" if c.ttl >= 0 else "pinned",
            "mechanism": c.mechanism,
        }
        for c in cuts
    ]


def revert_kernel(args: argparse.Namespace) -> list[tuple[bool, str]]:
    """Revert every cut knockout's module holds."""
    from knockout.errors import KnockoutError
    from knockout.targets.kernel import Control, module_loaded

    if not module_loaded():
        return []
    with Control() as control:
        cuts = control.listing()
        if not cuts:
            return []
        try:
            answer = control.command("revert all")
        except KnockoutError as exc:
            why = str(exc)
            return [(False, f"kernel: {why}" + ("" if "dmesg" in why else "; see dmesg"))]
    n = int(answer.removeprefix("reverted="))
    return [(True, f"kernel: reverted {n} cut{'s' if n != 1 else ''}")]
