"""Workloads that reproduce a symptom for knockout to diagnose.

:mod:`knockout.workloads.memcg_storm` is the seed incident's reclaim storm:
a pod memcg under ``memory.max``, many live child memcgs, page-cache reads
and anonymous memory with no swap, so memcg reclaim runs constantly and
walks every child.  It runs as root in the guest (``knockout vm``).
"""

from __future__ import annotations

__all__: list[str] = []
