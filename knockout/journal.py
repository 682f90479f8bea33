"""The journal of process cuts: written *before* a byte changes, cleared after revert.

Each cut in place has one small JSON file, keyed by the target's pid **and**
its start time (``/proc/PID/stat`` field 22), so that a recycled pid is never
mistaken for the process that was cut.  Files are written atomically (temp
file, then link or rename), so a SIGKILL of knockout at any instant leaves
either no entry or a whole one, and ``knockout revert --all`` can put the
original bytes back.  There is no fsync: the journal must outlive knockout,
not the machine -- after a crash the cut processes are gone too, and their
entries (another boot, other start times) are cleared without a write.

Kernel cuts revert themselves (the module's TTL); their journal only says
which knockout holds each one, so that ``knockout list`` can name it and
``knockout revert --all`` leaves the cuts of a live knockout alone, as it
does for process cuts (:class:`KernelJournal`).

The directory is ``$KNOCKOUT_JOURNAL_DIR`` if set, else ``/run/knockout`` when
writable (root), else ``$XDG_STATE_HOME/knockout`` (``~/.local/state/knockout``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from knockout.errors import Refused, UnsafeCut

__all__ = [
    "Entry",
    "Journal",
    "KernelEntry",
    "KernelJournal",
    "default_journal_dir",
    "self_identity",
    "start_time",
]


def start_time(pid: int) -> int | None:
    """``/proc/PID/stat`` field 22 (start time in clock ticks), or None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X", "x") and not _other_threads(pid):
        return None  # a zombie; but a leader that called pthread_exit leaves threads running
    return int(fields[19])


def _other_threads(pid: int) -> bool:
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except FileNotFoundError:
        return False


def self_identity() -> tuple[int, int]:
    """This process's (pid, start time): who holds a cut."""
    pid = os.getpid()
    start = start_time(pid)
    assert start is not None
    return pid, start


@dataclass(frozen=True)
class Entry:
    """One process cut that is (or may be) in place."""

    pid: int
    start_time: int
    address: int
    old: bytes  # the original bytes, restored by revert
    new: bytes  # the bytes the cut writes
    location: str  # "compute+0x9"
    intent: str  # CLI spelling, e.g. "--return 0"
    target: str  # "pid 1234 (/usr/bin/app)"
    arch: str
    #: the knockout process holding the cut, or None once ``--detach`` left it in place
    holder_pid: int | None = None
    holder_start: int | None = None
    created: float = 0.0

    @property
    def key(self) -> str:
        """``PID-STARTTIME-ADDRESS``: the entry's file name, unique per cut site."""
        return f"{self.pid}-{self.start_time}-{self.address:x}"

    @property
    def end(self) -> int:
        """The address just past the cut's bytes."""
        return self.address + len(self.old)

    def target_alive(self) -> bool:
        """The very process that was cut still runs (same pid, same start time)."""
        return start_time(self.pid) == self.start_time

    def holder_alive(self) -> bool:
        """A live knockout process still holds this cut and will revert it itself."""
        if self.holder_pid is None:
            return False
        return start_time(self.holder_pid) == self.holder_start

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; bytes as hex."""
        data = asdict(self)
        data["old"], data["new"] = self.old.hex(), self.new.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Entry:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        fields["old"] = bytes.fromhex(str(data["old"]))
        fields["new"] = bytes.fromhex(str(data["new"]))
        return cls(**fields)  # type: ignore[arg-type]


def default_journal_dir() -> Path:
    """Where the journal lives; see the module docstring."""
    env = os.environ.get("KNOCKOUT_JOURNAL_DIR")
    if env:
        return Path(env)
    run = Path("/run")
    if os.geteuid() == 0 and os.access(run, os.W_OK):
        return run / "knockout"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "knockout"


class Journal:
    """The process-cut entries under ``directory/process``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_journal_dir()) / "process"

    def _path(self, entry: Entry) -> Path:
        return self.directory / f"{entry.key}.json"

    def _write_temp(self, entry: Entry) -> Path:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise Refused(
                f"cannot create the journal {self.directory}: {exc.strerror}; "
                "set KNOCKOUT_JOURNAL_DIR to a writable directory"
            ) from None
        tmp = self.directory / f".{entry.key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(entry.to_json()))
        return tmp

    def add(self, entry: Entry) -> Entry:
        """Record ``entry`` atomically; refuse if a cut at that address is already recorded."""
        entry = replace(entry, created=entry.created or time.time())
        tmp = self._write_temp(entry)
        try:
            os.link(tmp, self._path(entry))
        except FileExistsError:
            raise UnsafeCut(
                f"{entry.target} already has a cut at {entry.address:#x}; "
                f"revert it first with 'knockout revert --all --pid {entry.pid}'"
            ) from None
        finally:
            tmp.unlink()
        return entry

    def replace(self, entry: Entry) -> None:
        """Overwrite ``entry``'s record atomically (e.g. to drop its holder on ``--detach``)."""
        os.replace(self._write_temp(entry), self._path(entry))

    def remove(self, entry: Entry) -> None:
        """Forget ``entry`` (missing is fine)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(entry).unlink()

    def entries(self, pid: int | None = None) -> list[Entry]:
        """The recorded entries, oldest first; only ``pid``'s when given."""
        found = []
        for path in self.directory.glob("*.json"):
            try:
                entry = Entry.from_json(json.loads(path.read_text()))
            except (FileNotFoundError, ValueError, TypeError):
                continue  # removed meanwhile, or not ours
            if pid is None or entry.pid == pid:
                found.append(entry)
        return sorted(found, key=lambda e: (e.created, e.address))


@dataclass(frozen=True)
class KernelEntry:
    """Which knockout holds the kernel module's cut ``id`` (at ``address``)."""

    id: int
    address: int
    location: str
    intent: str
    holder_pid: int
    holder_start: int

    def holder_alive(self) -> bool:
        """The knockout that applied the cut still runs (and renews it)."""
        return start_time(self.holder_pid) == self.holder_start


class KernelJournal:
    """The holders of kernel cuts, one file per module cut id under ``directory/kernel``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_journal_dir()) / "kernel"

    def _path(self, cut_id: int) -> Path:
        return self.directory / f"{cut_id}.json"

    def add(self, entry: KernelEntry) -> None:
        """Record ``entry`` (replacing a stale one with the same id); best effort."""
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.directory / f".{entry.id}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(asdict(entry)))
            os.replace(tmp, self._path(entry.id))

    def remove(self, cut_id: int) -> None:
        """Forget cut ``cut_id`` (missing is fine)."""
        with contextlib.suppress(OSError):
            self._path(cut_id).unlink()

    def holder(self, cut_id: int, address: int) -> KernelEntry | None:
        """The entry of the module's cut ``cut_id`` at ``address``; None if unknown or stale."""
        try:
            entry = KernelEntry(**json.loads(self._path(cut_id).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if entry.address != address:  # the module was reloaded and reuses ids
            self.remove(cut_id)
            return None
        return entry
