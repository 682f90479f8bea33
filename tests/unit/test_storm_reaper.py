"""The storm's reaper: a worker the OOM killer kills (SIGKILL) is started again; SIGTERM ends all.

The demo's climb cut shrink_node, the pod's OOM killer took a worker, and every
later frame was judged on a workload half its size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from knockout.workloads.memcg_storm import _REAPER


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def _wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    for _ in range(200):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_is_restarted_and_sigterm_ends_them_all() -> None:
    reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, json.dumps([["sleep", "60"], ["sleep", "60"]])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reaper.stdout is not None and reaper.stderr is not None
    first, second = (int(p) for p in reaper.stdout.readline().split())
    os.kill(first, signal.SIGKILL)
    restarted = reaper.stderr.readline()
    assert f"worker 0 (pid {first}) was killed; restarted as" in restarted
    new = int(restarted.split()[-1])
    assert _alive(new) and _alive(second)
    reaper.send_signal(signal.SIGTERM)
    assert reaper.wait(timeout=10) == 0
    _wait_for(lambda: not _alive(new) and not _alive(second), "the workers to end")


def test_a_worker_that_exits_by_itself_is_not_restarted() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _REAPER, json.dumps([["true"], ["sh", "-c", "exit 3"]])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stderr == ""
