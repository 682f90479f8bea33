"""Reversible system changes: a trial's arm can be a remedy instead of a code cut.

The seed's follow-ups ended with a remedy -- more room in the pod's
``memory.max``, swap, ``memory.swappiness`` -- and a remedy deserves the same
judgement as a cut: the same interleaved windows, statistics and guards.
:class:`Write` is one such change (pyperf's reversible operations are the
model): it reads the file's value, writes the new one, checks it took,
and puts the old value back on every way out.  Each write is journaled
(``<journal>/writes``) with the knockout that holds it, so that the
guardian (:mod:`knockout.guardian`) restores it if knockout is killed.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "memory.max"; _ = f.write_text("100\\n")
>>> w = parse_write(f"{f}=200")
>>> with applied(w, Journal(f.parent)) as held:
...     f.read_text().strip(), held.old
('200', '100')
>>> f.read_text().strip()
'100'
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from knockout.errors import BadInput, NotFound, Refused, UnsafeCut
from knockout.journal import default_journal_dir, self_identity, start_time

__all__ = ["AppliedWrite", "Journal", "Write", "applied", "parse_write", "revert_held_by"]


@dataclass(frozen=True)
class Write:
    """Write ``value`` to ``path`` for the cut windows; the old value comes back after."""

    path: Path
    value: str

    def describe(self) -> str:
        """``--write /sys/fs/cgroup/pod/memory.max=600M``."""
        return f"--write {self.path}={self.value}"


@dataclass(frozen=True)
class AppliedWrite:
    """A write in place: the value that was there before, and who holds it."""

    write: Write
    old: str
    holder_pid: int
    holder_start: int

    @property
    def key(self) -> str:
        return str(self.write.path).strip("/").replace("/", "_")


def parse_write(text: str) -> Write:
    """``FILE=VALUE`` -> :class:`Write` (the file must exist: this is no way to create files)."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip() or not value.strip():
        raise BadInput(
            f"--write takes FILE=VALUE, e.g. --write /sys/fs/cgroup/pod/memory.max=600M; "
            f"got {text!r}"
        )
    target = Path(path.strip())
    if not target.is_file():
        raise NotFound(f"--write {target}: no such file; a write changes an existing setting")
    return Write(target, value.strip())


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise Refused(f"cannot read {path}; run as root") from None
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, value: str) -> None:
    try:
        with path.open("w") as f:
            f.write(value)
    except PermissionError:
        raise Refused(f"cannot write {path}; run as root") from None
    except OSError as exc:
        raise BadInput(f"{path} refused {value!r}: {exc.strerror}; give a value it takes") from None


class Journal:
    """Writes in place, one JSON file each under ``directory/writes``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_journal_dir()) / "writes"

    def add(self, held: AppliedWrite) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {"path": str(held.write.path), "value": held.write.value, **asdict(held)}
        record.pop("write")
        tmp = self.directory / f".{held.key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.directory / f"{held.key}.json")

    def remove(self, held: AppliedWrite) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{held.key}.json").unlink()

    def entries(self) -> list[AppliedWrite]:
        out = []
        for path in self.directory.glob("*.json"):
            try:
                d = json.loads(path.read_text())
                out.append(
                    AppliedWrite(
                        Write(Path(d["path"]), d["value"]),
                        d["old"],
                        d["holder_pid"],
                        d["holder_start"],
                    )
                )
            except (OSError, ValueError, KeyError):
                continue
        return out


def apply(write: Write, journal: Journal) -> AppliedWrite:
    """Journal, then write; refuse a value the file does not take (the old one is kept)."""
    from knockout.guardian import ensure_guardian
    from knockout.journal import Journal as CutJournal

    pid, started = self_identity()
    held = AppliedWrite(write, _read(write.path), pid, started)
    ensure_guardian(CutJournal(journal.directory.parent))  # restores it if knockout is killed
    journal.add(held)
    try:
        _write(write.path, write.value)
    except BaseException:
        journal.remove(held)
        raise
    return held


def revert(held: AppliedWrite, journal: Journal) -> None:
    """Put the old value back, then forget the write."""
    _write(held.write.path, held.old)
    journal.remove(held)


def in_place(held: AppliedWrite) -> str | None:
    """None if the file still holds the written value (as the file spells it back); else why."""
    now = _read(held.write.path)
    if now == held.old and held.old != held.write.value:
        return f"{held.write.path} is back at {held.old!r}: something rewrote it"
    return None


@contextlib.contextmanager
def applied(write: Write, journal: Journal | None = None) -> Iterator[AppliedWrite]:
    """``write`` for the duration of the block, its old value back on every way out."""
    journal = journal or Journal()
    held = apply(write, journal)
    try:
        yield held
    finally:
        revert(held, journal)


def revert_held_by(pid: int, started: int, journal: Journal | None = None) -> list[str]:
    """Restore the writes of the (dead) knockout ``pid``; one line per write."""
    journal = journal or Journal()
    out = []
    for held in journal.entries():
        if held.holder_pid != pid or held.holder_start != started:
            continue
        if start_time(pid) == started:
            raise UnsafeCut(f"knockout pid {pid} still runs and holds {held.write.path}")
        revert(held, journal)
        out.append(f"restored {held.write.path} to {held.old!r}")
    return out
