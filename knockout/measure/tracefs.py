"""tracefs, the kernel's tracing file system: where knockout defines the probes that count calls.

:func:`open_tracefs` finds the mounted tracefs, or mounts a private one (at
``/run/knockout/tracefs-PID_START_N``, unmounted by :meth:`Tracefs.close`), so
that ``/sys/kernel/tracing`` is left exactly as it was and no other user's
mount is ever unmounted under them.  Control files are only ever *appended*
to: opening ``kprobe_events`` or ``uprobe_events`` with ``O_TRUNC`` (what a
shell's ``>`` does) deletes every probe on the machine, other people's too.

Every probe group and tracing instance knockout creates is named after its
owner -- ``knockout_PID_START_SERIAL``, PID and START being the owner's pid
and its start time (``/proc/PID/stat`` field 22), so that a recycled pid is
never taken for the owner.  :func:`remove_stale` removes what owners that no
longer run left behind (a knockout killed with SIGKILL).

>>> group_name(Owner(1234, 5678), 0)
'knockout_1234_5678_0'
>>> parse_group("knockout_1234_5678_0")
(Owner(pid=1234, start=5678), 0)
>>> parse_group("kprobes") is None
True
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from knockout.errors import NotFound, Refused
from knockout.journal import start_time

__all__ = [
    "Owner",
    "Tracefs",
    "error_message",
    "group_name",
    "held_signals",
    "interrupting_signals",
    "lockdown_mode",
    "mounts",
    "open_tracefs",
    "parse_group",
    "probe_groups",
    "remove_group",
    "remove_stale",
    "require",
]

#: where a private tracefs is mounted when none is
PRIVATE_DIR = Path("/run/knockout")
#: the prefix of every group, instance and private mount knockout creates
PREFIX = "knockout"
_GROUP = re.compile(rf"^{PREFIX}_(\d+)_(\d+)_(\d+)$")
_PRIVATE = re.compile(r"^tracefs-(\d+)_(\d+)_(\d+)$")
#: numbers the private mounts of this process (two probe sets may be open at once)
_MOUNTS = itertools.count()
#: umount2() flag: detach now, finish when no longer busy (include/linux/fs.h)
_MNT_DETACH = 2
#: the dynamic-event files that hold probe definitions
EVENT_FILES = ("uprobe_events", "kprobe_events")
_DEFINITION = re.compile(r"^[pr]:(?P<group>[^/\s]+)/(?P<event>\S+)\s")


@dataclass(frozen=True)
class Owner:
    """A process that owns probes: its pid and start time (clock ticks after boot)."""

    pid: int
    start: int

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        start = start_time(pid)
        assert start is not None  # a running process is not a zombie
        return cls(pid, start)

    def alive(self) -> bool:
        """Whether the owner still runs (its pid with the same start time)."""
        return start_time(self.pid) == self.start


def group_name(owner: Owner, serial: int) -> str:
    """The probe group (and tracing instance) of ``owner``'s ``serial``-th probe set."""
    return f"{PREFIX}_{owner.pid}_{owner.start}_{serial}"


def parse_group(name: str) -> tuple[Owner, int] | None:
    """The owner and serial of a group knockout named, or None for any other name."""
    match = _GROUP.match(name)
    if match is None:
        return None
    return Owner(int(match[1]), int(match[2])), int(match[3])


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back (this thread) while probes are made or removed.

    A Ctrl-C then lands after the block, never between writing a probe and
    knowing it exists.
    """
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def interrupting_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into ``KeyboardInterrupt`` (as Ctrl-C is) so ``finally`` blocks run.

    Outside the main thread, where Python takes no handlers, signals stay as they are.
    """

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def lockdown_mode(path: str = "/sys/kernel/security/lockdown") -> str | None:
    """The kernel's lockdown mode (``none``, ``integrity``, ``confidentiality``), if it says.

    >>> lockdown_mode("/nonexistent") is None
    True
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    match = re.search(r"\[(\w+)\]", text)
    return match[1] if match else None


class Tracefs:
    """A mounted tracefs at ``root``; ``private`` when this object mounted it (then
    :meth:`close` unmounts it)."""

    def __init__(self, root: Path, private: bool = False) -> None:
        self.root = root
        self.private = private

    def __repr__(self) -> str:
        return f"<Tracefs {self.root}{' (private)' if self.private else ''}>"

    def path(self, name: str) -> Path:
        """The control file (or directory) ``name`` under the mount."""
        return self.root / name

    def has(self, name: str) -> bool:
        """Whether the control file ``name`` exists (the kernel was built with it)."""
        return self.path(name).exists()

    def read(self, name: str) -> str:
        """The text of control file ``name``."""
        return self.path(name).read_text()

    def append(self, name: str, line: str) -> None:
        """Write ``line`` to control file ``name`` in one write, appending (never truncating).

        Raises the kernel's :class:`OSError` (the caller explains it).
        """
        fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def set(self, name: str, value: str) -> None:
        """Write ``value`` to a setting (``tracing_on``, an event's ``enable``)."""
        fd = os.open(self.path(name), os.O_WRONLY)
        try:
            os.write(fd, value.encode() + b"\n")
        finally:
            os.close(fd)

    def close(self) -> None:
        """Unmount a private mount (and remove its directory); a shared one stays."""
        if self.private:
            _unmount(self.root)
            self.private = False


def error_message(log: str, command: str) -> str | None:
    """The kernel's reason for refusing ``command``, from the text of tracefs ``error_log``.

    >>> log = ('[    7.8] trace_kprobe: error: Probe point is not an instruction boundary\\n'
    ...        '  Command: p:g/e shrink_slab+0x10\\n                   ^\\n')
    >>> error_message(log, "p:g/e shrink_slab+0x10")
    'Probe point is not an instruction boundary'
    >>> error_message(log, "p:g/f shrink_slab") is None
    True
    """
    found = None
    lines = log.splitlines()
    for i, line in enumerate(lines[:-1]):
        match = re.search(r"error: (.*)$", line)
        if match and lines[i + 1].strip() == f"Command: {command}":
            found = match[1].strip()
    return found


def open_tracefs(owner: Owner | None = None) -> Tracefs:
    """The mounted tracefs, or a private mount of it when none is mounted.

    Raises :class:`Refused` when tracefs cannot be used, saying why (no root,
    lockdown, a kernel without tracing).
    """
    owner = owner or Owner.current()
    _unmount_stale_private()
    mounted = _mounted_tracefs()
    tracefs = Tracefs(mounted) if mounted is not None else _mount_private(owner)
    try:
        _check_readable(tracefs)
    except Refused:
        tracefs.close()
        raise
    return tracefs


def mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of this mount namespace."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((fields[1].replace("\\040", " "), fields[2]))
    return out


def _mounted_tracefs() -> Path | None:
    """A tracefs mount we may use: the standard place first, never another owner's private one."""
    found = [Path(point) for point, kind in mounts() if kind == "tracefs"]
    found = [p for p in found if not _PRIVATE.match(p.name)]
    for standard in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if standard in found:
            return standard
    return found[0] if found else None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_private(owner: Owner) -> Tracefs:
    where = PRIVATE_DIR / f"tracefs-{owner.pid}_{owner.start}_{next(_MOUNTS)}"
    try:
        PRIVATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        where.mkdir(mode=0o700, exist_ok=True)
    except PermissionError:
        raise Refused(
            f"tracefs is not mounted and {where} cannot be created; run as root"
        ) from None
    if _libc().mount(b"nodev", bytes(where), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        with contextlib.suppress(OSError):
            where.rmdir()
        raise Refused(_mount_refusal(err)) from None
    return Tracefs(where, private=True)


def _mount_refusal(err: int) -> str:
    if err == errno.ENODEV:
        return "this kernel has no tracefs (built without CONFIG_TRACING); count calls elsewhere"
    if err == errno.EPERM:
        return (
            "mounting tracefs needs root (CAP_SYS_ADMIN); run as root, or "
            "mount -t tracefs nodev /sys/kernel/tracing first"
        )
    return f"cannot mount tracefs ({os.strerror(err)}); mount -t tracefs nodev /sys/kernel/tracing"


def _unmount(where: Path) -> None:
    _libc().umount2(bytes(where), _MNT_DETACH)
    with contextlib.suppress(OSError):
        where.rmdir()


def _unmount_stale_private() -> None:
    """Unmount the private tracefs mounts of owners that no longer run."""
    for point, kind in mounts():
        match = _PRIVATE.match(Path(point).name)
        mine = kind == "tracefs" and match and Path(point).parent == PRIVATE_DIR
        if mine and match and not Owner(int(match[1]), int(match[2])).alive():
            _unmount(Path(point))


def _check_readable(tracefs: Tracefs) -> None:
    try:
        os.listdir(tracefs.root)
    except PermissionError:
        mode = lockdown_mode()
        if mode == "confidentiality":
            raise Refused(
                "kernel lockdown (confidentiality) forbids tracefs; boot with lockdown=integrity "
                "or lockdown=none to count calls"
            ) from None
        raise Refused(f"cannot read {tracefs.root}; run as root") from None


def probe_groups(tracefs: Tracefs) -> dict[str, list[tuple[str, str]]]:
    """Every probe group in ``uprobe_events``/``kprobe_events``: group -> [(file, event)]."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in EVENT_FILES:
        if not tracefs.has(name):
            continue
        for line in tracefs.read(name).splitlines():
            match = _DEFINITION.match(line + " ")
            if match:
                groups.setdefault(match["group"], []).append((name, match["event"]))
    return groups


def remove_group(tracefs: Tracefs, group: str, events: list[tuple[str, str]]) -> list[str]:
    """Disable and delete the probes of ``group`` and its tracing instance.

    Returns the problems met (empty when everything went), each one line.
    """
    problems = []
    instance = tracefs.path(f"instances/{group}")
    for enable in (instance / "events" / group / "enable", tracefs.path(f"events/{group}/enable")):
        if enable.exists():
            with contextlib.suppress(OSError):
                tracefs.set(str(enable.relative_to(tracefs.root)), "0")
    if instance.exists():
        try:
            instance.rmdir()
        except OSError as exc:
            problems.append(f"cannot remove the tracing instance {instance}: {exc.strerror}")
    for file, event in events:
        try:
            tracefs.append(file, f"-:{group}/{event}")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                problems.append(f"cannot remove probe {group}/{event}: {exc.strerror}")
    return problems


def remove_stale(tracefs: Tracefs) -> list[str]:
    """Remove the probe groups and instances left by owners that no longer run.

    Returns the names of the groups removed.
    """
    removed = []
    groups = probe_groups(tracefs)
    instances = tracefs.path("instances")
    names = set(groups)
    if instances.is_dir():
        names |= {p.name for p in instances.iterdir()}
    for group in sorted(names):
        parsed = parse_group(group)
        if parsed is None or parsed[0].alive():
            continue
        with held_signals():
            remove_group(tracefs, group, groups.get(group, []))
        removed.append(group)
    return removed


def require(tracefs: Tracefs, name: str, what: str, fix: str) -> None:
    """Raise :class:`NotFound` naming ``fix`` when control file ``name`` is missing."""
    if not tracefs.has(name):
        raise NotFound(f"{tracefs.root}/{name} is missing: this kernel has no {what}; {fix}")
