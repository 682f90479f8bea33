"""The dead-man switch of process cuts: a guardian that reverts what a dead knockout held.

A kernel cut reverts itself when its TTL lapses.  A process cut gets the
same promise from a guardian: the first time a knockout process journals a
process cut, it starts ``python -m knockout.guardian`` in a session of its
own (so a signal to knockout's process group or terminal does not reach
it).  The guardian watches knockout through a pidfd.  When knockout exits
-- normally, or killed with SIGKILL -- the guardian reverts every journal
entry that knockout held (its pid *and* start time), with the checks of
``knockout revert --all`` (the target is the process that was cut, the bytes
there are the cut's), puts back the files its trials wrote (a remedy's
``--write``, :mod:`knockout.changes`), and exits.  Entries left on purpose with
``cut --detach`` hold no knockout and are left alone.

>>> guardian_command(1234, 5678, Path("/run/knockout"))[-3:]
['1234', '5678', '/run/knockout']
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from knockout.journal import Journal, self_identity, start_time

__all__ = ["ensure_guardian", "guardian_command", "main", "revert_held_by", "wait_for_exit"]

#: journal directories this process already has a guardian for
_STARTED: set[Path] = set()
_LOCK = threading.Lock()


def guardian_command(holder_pid: int, holder_start: int, journal_dir: Path) -> list[str]:
    """The command line of the guardian of ``holder_pid``'s cuts in ``journal_dir``."""
    return [
        sys.executable,
        "-m",
        "knockout.guardian",
        str(holder_pid),
        str(holder_start),
        str(journal_dir),
    ]


def ensure_guardian(journal: Journal) -> None:
    """Start this process's guardian for ``journal`` unless it runs already.

    Called before the first cut is journaled; the guardian needs no
    handshake: if knockout is already dead when it starts, it reverts at once.
    """
    root = journal.directory.parent
    with _LOCK:
        if root in _STARTED:
            return
        pid, started = self_identity()
        env = dict(os.environ, PYTHONPATH=_package_root())
        subprocess.Popen(
            guardian_command(pid, started, root),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
        _STARTED.add(root)


def _package_root() -> str:
    """The directory that holds this ``knockout`` package (so the guardian imports the same)."""
    here = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return f"{here}{os.pathsep}{rest}" if rest else here


def wait_for_exit(pid: int, started: int) -> None:
    """Block until the process ``pid`` that started at tick ``started`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd_open (before Linux 5.3): poll the start time instead
        while start_time(pid) == started:
            time.sleep(0.05)
        return
    try:
        if start_time(pid) != started:
            return  # the pid was recycled: our holder is gone already
        select.select([fd], [], [])
    finally:
        os.close(fd)


def revert_held_by(pid: int, started: int, journal: Journal) -> list[str]:
    """Revert the journaled cuts held by the (dead) knockout ``pid``; one line per cut."""
    from knockout.targets.process import revert_journaled

    mine = {
        e.key
        for e in journal.entries()
        if e.holder_pid == pid and e.holder_start == started
    }
    if not mine:
        return []
    outcomes = revert_journaled(journal, only=mine)
    return [f"{o.status}: {o.message}" for o in outcomes]


def main(argv: list[str] | None = None) -> int:
    """``python -m knockout.guardian HOLDER_PID HOLDER_START JOURNAL_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        usage = "usage: python -m knockout.guardian HOLDER_PID HOLDER_START JOURNAL_DIR"
        print(usage, file=sys.stderr)
        return 2
    pid, started, directory = int(args[0]), int(args[1]), Path(args[2])
    journal = Journal(directory)
    import knockout.targets.process  # noqa: F401 -- imported now, so reverting is quick later

    wait_for_exit(pid, started)
    from knockout import changes

    lines = revert_held_by(pid, started, journal)
    lines += changes.revert_held_by(pid, started, changes.Journal(directory))
    for line in lines:
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
