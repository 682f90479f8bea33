"""A process knockout starts itself (``--run 'CMD'``), so a cut that crashes it can be followed.

With ``--pid`` a cut that crashes the target ends a search with what was
found; with ``--run`` knockout owns the process: :meth:`Launched.restart`
starts it again (a fresh :class:`~knockout.targets.process.ProcessTarget`)
and the search goes on.  The command runs through ``sh -c 'exec CMD'`` in a
session of its own, so its pid is the command's, and it is stopped (SIGTERM,
then SIGKILL) when knockout is done with it.

>>> launched = Launched("sleep 60")            # doctest: +SKIP
>>> target = launched.target; ...; launched.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from knockout.errors import BadInput, TargetGone
from knockout.targets.process import ProcessTarget

__all__ = ["Launched"]


class Launched:
    """``command`` started by knockout, and the target on it."""

    def __init__(self, command: str, *, wait: float = 1.0) -> None:
        if not command.strip():
            raise BadInput("--run needs a command, e.g. --run './server --port 8080'")
        self.command = command
        self.wait = wait
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.target = self._start()

    def _start(self) -> ProcessTarget:
        self._proc = subprocess.Popen(
            ["sh", "-c", f"exec {self.command}"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(self.wait)  # let it start serving before it is profiled or cut
        if self._proc.poll() is not None:
            raise TargetGone(
                f"--run {self.command!r} exited with status {self._proc.returncode} before it "
                "could be cut; check the command by running it by hand"
            )
        return ProcessTarget(self._proc.pid)

    def restart(self) -> ProcessTarget:
        """Stop what is left of the process and start the command again."""
        self._stop()
        self.restarts += 1
        self.target = self._start()
        return self.target

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        """Revert what the target holds and stop the process."""
        with contextlib.suppress(TargetGone):
            self.target.close()
        self._stop()
