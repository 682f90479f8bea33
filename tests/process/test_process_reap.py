"""A target killed while knockout has its threads stopped can still be reaped by its parent."""

import os
import signal
import subprocess
import time
from pathlib import Path

from knockout.targets.process import ProcessTarget


def test_target_killed_while_stopped_is_reaped_by_its_parent(binary: Path) -> None:
    proc = subprocess.Popen(
        [str(binary), "4", "spin"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        target = ProcessTarget(proc.pid)
        with target._stopped():
            os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.1)
        # Before the fix, knockout (this process, the tracer) never reaped the killed
        # threads and this wait hung: a traced thread's exit is reported to its tracer.
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
