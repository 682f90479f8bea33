"""Counting calls: calls per second, fan-out and cost per call of the frames on a hot stack.

A profile says where the CPU time is; it does not say whether a frame is hot
because each call is dear or because it is called very often.  The climb
(issue #11) splits each frame's cost three ways: **calls per second**, **CPU
cost per call** (inclusive) and **fan-out** -- calls of a callee per call of
the frame (a reclaim pass calling ``shrink_slab`` once per memcg has fan-out
= the number of memcgs).  This module counts the calls, in a window of its
own: probes cost time (each hit traps), so they must never be in place while
a trial judges a symptom.

Probe points are a function's entry (``f``) and a call site (``f+0x17``, the
call instruction: its hits are the calls made from that site):

* in a **process** (``pid=``): uprobes.  The runtime address is resolved from
  the process's symbols and turned into a file offset through
  ``/proc/PID/maps``; an offset inside an instruction is refused (a uprobe
  there would corrupt the code).
* in the **kernel** (``kernel=True``, inside the guest): kprobes, as
  ``SYMBOL`` or ``SYMBOL+OFF``; the kernel checks the instruction boundary.

Both are defined through tracefs (``uprobe_events``/``kprobe_events``) in a
group named after the owner (see :mod:`knockout.measure.tracefs`), enabled in
a tracing instance of their own whose ring buffer is switched off, and
counted from ``uprobe_profile``/``kprobe_profile``: the kernel counts every
hit, nothing is traced, nothing is copied to user space per hit.  Why not
``perf probe`` + ``perf stat``: per hit the trap dominates and the two cost
the same (3.34 µs at a function entry either way on the development host,
``bench/out/calls.json``); tracefs needs no second process per window
(``perf stat`` starts in 0.03 s on the host, 0.4 s in the TCG guest, plus
``perf probe`` to define the event), and the same few file writes serve
uprobes on the host and kprobes in the guest.  The price:
a uprobe counts every process that runs the probed file -- a function in a
shared library is counted machine-wide; :attr:`CallCounts.shared_with` names
the other processes that map a probed file.

>>> counts = CallCounts("pid 42", "uprobe", 2.0, {"f": 200, "f+0x17": 1400})
>>> counts.calls_per_s("f"), counts.fanout("f", "f+0x17")
(100.0, 7.0)
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knockout.errors import BadInput, KnockoutError, NotFound, Refused, TargetGone
from knockout.journal import start_time
from knockout.measure.tracefs import (
    Owner,
    Tracefs,
    error_message,
    group_name,
    held_signals,
    interrupting_signals,
    lockdown_mode,
    mounts,
    open_tracefs,
    probe_groups,
    remove_group,
    remove_stale,
    require,
)

if TYPE_CHECKING:
    from knockout.targets import Outcome

__all__ = [
    "CallCounts",
    "ProbePoint",
    "ProbeSet",
    "Snapshot",
    "cost_per_call",
    "count_calls",
    "counts_between",
    "fanout",
    "kernel_points",
    "ns_per_hit",
    "parse_profile",
    "probing",
    "process_points",
    "remove_stale_probes",
]


# --- the arithmetic ----------------------------------------------------------------


def fanout(caller_calls: float, site_calls: float) -> float | None:
    """Calls made from a call site per call of the function it lies in; None if never called.

    >>> fanout(250, 1000)      # 250 reclaim passes, 1000 shrink_slab calls from the walk
    4.0
    >>> fanout(0, 0) is None
    True
    """
    return site_calls / caller_calls if caller_calls else None


def cost_per_call(inclusive_share: float, busy_cpu_seconds: float, calls: float) -> float | None:
    """CPU seconds per call of a frame: its inclusive share of the busy CPU time over its calls.

    ``inclusive_share`` is :meth:`Profile.total_share
    <knockout.measure.profile.Profile.total_share>` of the frame,
    ``busy_cpu_seconds`` the busy CPU time that profile covers (e.g.
    ``profile.busy / sampling_hz`` with cpu-clock samples; under TCG the guest
    loses timer ticks, so prefer a measured CPU time there), and ``calls`` the
    frame's calls over the same span of time -- or pass both as rates per
    second (busy CPU seconds per second and :meth:`CallCounts.calls_per_s`).
    None when the frame was not called.

    >>> round(cost_per_call(0.45, 1.8, 900), 9)   # 45% of 1.8 busy CPU-s over 900 calls
    0.0009
    >>> cost_per_call(0.2, 1.0, 0) is None
    True
    """
    if not calls:
        return None
    return inclusive_share * busy_cpu_seconds / calls


def ns_per_hit(plain_seconds: float, probed_seconds: float, hits: int) -> float:
    """The cost of one probe hit: the extra time of a run with probes, per hit, in ns.

    >>> ns_per_hit(0.010, 3.210, 1_000_000)    # 1M calls: 10 ms unprobed, 3.21 s probed
    3200.0
    """
    if hits <= 0:
        raise BadInput("no probe hits to divide the extra time by; probe a point the run reaches")
    return round((probed_seconds - plain_seconds) / hits * 1e9, 3)


# --- probe points --------------------------------------------------------------------


@dataclass(frozen=True)
class ProbePoint:
    """Where one probe goes: ``spec`` as asked, ``place`` as the probe definition says it.

    For a uprobe ``place`` is ``FILE:0xOFFSET`` (a file offset) and ``inode``
    the file's (major, minor, inode); for a kprobe ``SYMBOL[+OFF]``.
    """

    spec: str
    place: str
    inode: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class _Mapping:
    start: int
    end: int
    offset: int
    inode: tuple[int, int, int]
    path: str


def _exec_mappings(pid: int) -> list[_Mapping]:
    """The executable file mappings of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        raise NotFound(f"no process {pid}; check the pid with ps") from None
    except PermissionError:
        raise Refused(f"cannot read /proc/{pid}/maps; run as root") from None
    out = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "x" not in fields[1] or not fields[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        major, minor = (int(x, 16) for x in fields[3].split(":"))
        inode = (major, minor, int(fields[4]))
        out.append(_Mapping(start, end, int(fields[2], 16), inode, fields[5]))
    return out


def _inode_of(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _probe_path(pid: int, mapping: _Mapping) -> str:
    """A path the kernel resolves to the very file ``pid`` maps.

    The mapped path, when it still names that file; else (rebuilt, deleted,
    another mount namespace, a space in the name) the mapping's
    ``/proc/PID/map_files`` link, which the kernel follows to the mapped file.
    """
    if _inode_of(mapping.path) == mapping.inode and not re.search(r"\s", mapping.path):
        return mapping.path
    return f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}"


def _check_boundary(spec: str, address: int, table: Any) -> None:
    """Refuse an address that is not the start of an instruction of its function."""
    from knockout.asm import disasm
    from knockout.elf import open_elf

    found = table.symbolize(address)
    symbol = found.symbol if found else None
    if symbol is None or not symbol.size:
        raise BadInput(
            f"{spec} ({address:#x}) lies in no function symbol with a size; probe a function's "
            "entry or an instruction inside one"
        )
    if address == symbol.address:
        return
    image = table.image_for(address)
    if image is None:
        raise NotFound(
            f"{spec}: no ELF file behind {address:#x}; probe a function of a mapped file"
        )
    elf = open_elf(image.path)
    code = elf.read(symbol.address - image.bias, symbol.size)
    insns = disasm(code, elf.arch, vma=symbol.address)
    starts = [insn.address for insn in insns]
    if address in starts:
        return
    decoded = insns[-1].end if insns else symbol.address
    if address >= decoded:
        raise BadInput(
            f"{spec}: {symbol.name} decodes only up to +{decoded - symbol.address:#x} (data in "
            "the code?), so no instruction boundary can be checked there; probe an earlier point"
        )
    near = [a for a in starts if a < address][-1:] + [a for a in starts if a > address][:1]
    offsets = " or ".join(f"{symbol.name}+{a - symbol.address:#x}" for a in near)
    raise BadInput(
        f"{spec} is inside an instruction of {symbol.name} (a uprobe there would corrupt it); "
        f"probe an instruction's start: {offsets or symbol.name}"
    )


def process_points(pid: int, specs: Sequence[str]) -> list[ProbePoint]:
    """Uprobe points in process ``pid`` for ``specs`` (``f``, ``f+0x17``, ``0xADDR``).

    Each address is checked to start an instruction of its function (read
    from the file, which is what a uprobe executes) and turned into a file
    offset through ``/proc/PID/maps``.
    """
    from knockout.symbols import process_symbols

    _check_unique(specs)
    table = process_symbols(pid)
    mappings = _exec_mappings(pid)
    points = []
    for spec in specs:
        address = table.resolve(spec).address
        mapping = next((m for m in mappings if m.start <= address < m.end), None)
        if mapping is None:
            raise NotFound(
                f"{spec} ({address:#x}) lies in no executable file mapping of pid {pid}; "
                "probe code of a mapped ELF file (JIT code cannot take uprobes)"
            )
        _check_boundary(spec, address, table)
        offset = address - mapping.start + mapping.offset
        points.append(ProbePoint(spec, f"{_probe_path(pid, mapping)}:{offset:#x}", mapping.inode))
    return points


_KERNEL_SPEC = re.compile(
    r"^(?:(?P<module>[\w-]+):)?(?P<symbol>[A-Za-z_.][\w.]*)(?:\+(?P<off>0[xX][0-9a-fA-F]+|\d+))?$"
)


def kernel_points(specs: Sequence[str]) -> list[ProbePoint]:
    """Kprobe points for ``specs``: ``SYMBOL``, ``SYMBOL+OFF``, ``MODULE:SYMBOL[+OFF]``, ``0xADDR``.

    Addresses are named ``SYMBOL+OFF`` through ``/proc/kallsyms``; the kernel
    itself refuses an offset inside an instruction.

    >>> [p.place for p in kernel_points(["shrink_slab", "do_sys_poll+646", "ext4:ext4_sync_fs"])]
    ['shrink_slab', 'do_sys_poll+0x286', 'ext4:ext4_sync_fs']
    """
    _check_unique(specs)
    points = []
    for spec in specs:
        text = spec.strip()
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            text = _kernel_name(int(text, 16), spec)
        match = _KERNEL_SPEC.match(text)
        if match is None:
            raise BadInput(
                f"cannot read kernel probe point {spec!r}; write SYMBOL, SYMBOL+0x150, "
                "MODULE:SYMBOL or 0xADDR"
            )
        place = f"{match['module']}:" if match["module"] else ""
        place += match["symbol"]
        if match["off"] and int(match["off"], 0):
            place += f"+{int(match['off'], 0):#x}"
        points.append(ProbePoint(spec, place))
    return points


def _kernel_name(address: int, spec: str) -> str:
    from knockout.symbols import kallsyms

    found = kallsyms().symbolize(address)
    if found is None or found.symbol is None:
        raise NotFound(f"{spec} lies in no kernel symbol (/proc/kallsyms); check the address")
    name = found.symbol.name
    if found.symbol.module:
        name = f"{found.symbol.module}:{name}"
    return f"{name}+{found.offset:#x}" if found.offset else name


def _check_unique(specs: Sequence[str]) -> None:
    if not specs:
        raise BadInput("no probe points given; name at least one function or call site")
    seen = [s for s, n in _counts(specs).items() if n > 1]
    if seen:
        raise BadInput(f"probe point {seen[0]!r} is given twice; give each point once")


def _counts(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# --- reading the kernel's counts -----------------------------------------------------------


def parse_profile(text: str, kind: str) -> dict[str, tuple[int, int]]:
    """Hits and misses per event from ``uprobe_profile`` or ``kprobe_profile`` (``kind``).

    Lines are ``FILE EVENT HITS`` (uprobes: the file may hold spaces) and
    ``EVENT HITS MISSES`` (kprobes: misses are hits the kernel could not run
    the probe for, e.g. nested in another probe).

    >>> parse_profile("  /tmp/my prog  e_0      17\\n", "uprobe")
    {'e_0': (17, 0)}
    >>> parse_profile("  e_1        120          3\\n", "kprobe")
    {'e_1': (120, 3)}
    """
    out = {}
    for line in text.splitlines():
        fields = line.split()
        try:
            if kind == "uprobe" and len(fields) >= 3:
                out[fields[-2]] = (int(fields[-1]), 0)
            elif kind == "kprobe" and len(fields) >= 3:
                out[fields[-3]] = (int(fields[-2]), int(fields[-1]))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Snapshot:
    """The probes' counts at one instant (``at``: time.monotonic()): hits and misses by spec."""

    at: float
    hits: Mapping[str, int]
    missed: Mapping[str, int]


@dataclass(frozen=True)
class CallCounts:
    """Calls counted at each probe point over one window of ``seconds``.

    ``hits`` are the probe hits by spec; for kprobes ``missed`` the hits the
    kernel could not run the probe for (the call happened all the same):
    :meth:`calls` adds them.  ``shared_with`` are other processes that map a
    probed file: their calls are counted too.  ``notes`` say what else limits
    the counts.
    """

    target: str
    mechanism: str  # "uprobe" | "kprobe"
    seconds: float
    hits: Mapping[str, int]
    missed: Mapping[str, int] = field(default_factory=dict)
    shared_with: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def calls(self, point: str) -> int:
        """Calls through ``point`` in the window."""
        if point not in self.hits:
            known = ", ".join(self.hits)
            raise NotFound(f"{point!r} was not probed (probed: {known}); count it first")
        return self.hits[point] + self.missed.get(point, 0)

    def calls_per_s(self, point: str) -> float:
        """Calls through ``point`` per second."""
        return self.calls(point) / self.seconds if self.seconds > 0 else 0.0

    def fanout(self, caller_entry: str, callee_site: str) -> float | None:
        """Calls from ``callee_site`` (a call site in the caller) per call of ``caller_entry``."""
        return fanout(self.calls(caller_entry), self.calls(callee_site))

    def probe_seconds(self, ns_per_hit: float) -> float:
        """CPU time the probes took in the window, at ``ns_per_hit`` a hit (measured apart)."""
        return sum(self.calls(p) for p in self.hits) * ns_per_hit / 1e9

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "mechanism": self.mechanism,
            "seconds": self.seconds,
            "points": {
                p: {
                    "hits": self.hits[p],
                    "missed": self.missed.get(p, 0),
                    "calls_per_s": self.calls_per_s(p),
                }
                for p in self.hits
            },
            "shared_with": list(self.shared_with),
            "notes": list(self.notes),
        }


def counts_between(start: Snapshot, end: Snapshot, target: str, mechanism: str) -> CallCounts:
    """The calls counted from ``start`` to ``end`` (two reads of the same probes).

    >>> a = Snapshot(10.0, {"f": 5}, {"f": 0})
    >>> counts_between(a, Snapshot(12.0, {"f": 25}, {"f": 1}), "kernel", "kprobe").calls("f")
    21
    """
    return CallCounts(
        target,
        mechanism,
        end.at - start.at,
        {p: end.hits[p] - start.hits[p] for p in end.hits},
        {p: end.missed[p] - start.missed[p] for p in end.missed},
    )


def _short_of(start: Snapshot, end: Snapshot, min_calls: int) -> list[str]:
    """The points called fewer than ``min_calls`` times between two reads.

    >>> _short_of(Snapshot(0, {"f": 1, "g": 2}, {}), Snapshot(1, {"f": 9, "g": 3}, {"g": 1}), 3)
    ['g']
    """
    return [
        p
        for p in end.hits
        if end.hits[p] - start.hits[p] + end.missed.get(p, 0) - start.missed.get(p, 0) < min_calls
    ]


# --- the probes themselves -----------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    name: str  # "uprobe" | "kprobe"
    events: str  # the definitions file
    profile: str  # the counts file
    lacking: str  # what a kernel without the files lacks
    fix: str  # and what to do then


UPROBE = _Kind(
    "uprobe",
    "uprobe_events",
    "uprobe_profile",
    "uprobe events (CONFIG_UPROBE_EVENTS)",
    "use a kernel built with them",
)
KPROBE = _Kind(
    "kprobe",
    "kprobe_events",
    "kprobe_profile",
    "kprobe events (CONFIG_KPROBE_EVENTS)",
    "count kernel calls in the guest (knockout vm -- knockout ...)",
)
_SERIALS = itertools.count()
#: ENOTSUPP (include/linux/errno.h): kernel-internal, the uprobe cannot handle the instruction
_ENOTSUPP = 524


class ProbeSet:
    """Probes at ``points`` (all uprobes or all kprobes), enabled and counting until closed.

    Use it as a context manager (:func:`probing`): the probes and their
    tracing instance are removed on every way out -- an exception, Ctrl-C,
    SIGTERM/SIGHUP (through :func:`~knockout.measure.tracefs.interrupting_signals`);
    after a SIGKILL the next ProbeSet on the machine removes them
    (:func:`knockout.measure.tracefs.remove_stale`).
    """

    def __init__(self, kind: _Kind, points: Sequence[ProbePoint], target: str) -> None:
        self.kind = kind
        self.points = tuple(points)
        self.target = target
        self.owner = Owner.current()
        self.group = group_name(self.owner, next(_SERIALS))
        self._tracefs: Tracefs | None = None
        self._events = {f"{self.group}_{i}": p.spec for i, p in enumerate(self.points)}

    def __repr__(self) -> str:
        return f"<ProbeSet {self.group}: {len(self.points)} {self.kind.name}s on {self.target}>"

    def __enter__(self) -> ProbeSet:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Define and enable every probe (removing stale ones of dead owners first)."""
        tracefs = open_tracefs(self.owner)
        self._tracefs = tracefs
        try:
            require(tracefs, self.kind.events, self.kind.lacking, self.kind.fix)
            remove_stale(tracefs)
            with held_signals():
                self._define(tracefs)
            self._enable(tracefs)
        except BaseException:
            self.close()
            raise

    def _define(self, tracefs: Tracefs) -> None:
        for event, point in zip(self._events, self.points, strict=True):
            command = f"p:{self.group}/{event} {point.place}"
            try:
                tracefs.append(self.kind.events, command)
            except OSError as exc:
                raise self._refusal(tracefs, point, command, exc) from None
        instance = f"instances/{self.group}"
        try:
            tracefs.path(instance).mkdir()
        except OSError as exc:
            raise Refused(
                f"cannot create the tracing instance {tracefs.path(instance)} ({exc.strerror}); "
                "run as root"
            ) from None
        tracefs.set(f"{instance}/tracing_on", "0")  # count hits, record nothing
        with contextlib.suppress(OSError):
            tracefs.set(f"{instance}/buffer_size_kb", "1")  # the smallest buffer it will take

    def _enable(self, tracefs: Tracefs) -> None:
        for event, point in zip(self._events, self.points, strict=True):
            try:
                tracefs.set(f"instances/{self.group}/events/{self.group}/{event}/enable", "1")
            except OSError as exc:
                raise Refused(_enable_refusal(self.kind, point, exc)) from None

    def _refusal(
        self, tracefs: Tracefs, point: ProbePoint, command: str, exc: OSError
    ) -> Exception:
        """The error to raise when the kernel refused to define the probe at ``point``."""
        if exc.errno == errno.EPERM and lockdown_mode() == "confidentiality":
            return Refused(
                f"kernel lockdown (confidentiality) forbids {self.kind.name}s; boot with "
                "lockdown=integrity or lockdown=none to count calls"
            )
        if exc.errno in (errno.EPERM, errno.EACCES):
            return Refused(f"defining a {self.kind.name} needs root; run as root")
        reason = error_message(_read_or_empty(tracefs, "error_log"), command)
        if reason and "instruction boundary" in reason:
            return Refused(
                f"the kernel refuses a {self.kind.name} at {point.spec}: {reason}; probe an "
                "instruction's start (knockout disasm SYMBOL --kernel lists them)"
            )
        if self.kind is KPROBE:
            found = _kprobe_refusal(tracefs, point)
            if found:
                return found
        said = reason or exc.strerror
        if exc.errno == errno.ENOENT:
            return NotFound(
                f"the kernel finds no {point.place} for {point.spec!r} ({said}); "
                "check the file path, or the name in /proc/kallsyms"
            )
        return Refused(
            f"the kernel refuses a {self.kind.name} at {point.spec} ({said}); "
            "probe a function's entry or an instruction's start"
        )

    def read(self) -> Snapshot:
        """The counts now (one read of the profile file: all probes at the same instant)."""
        assert self._tracefs is not None, "read() before open()"
        text = self._tracefs.read(self.kind.profile)
        at = time.monotonic()
        found = parse_profile(text, self.kind.name)
        missing = [spec for event, spec in self._events.items() if event not in found]
        if missing:
            raise TargetGone(
                f"the probes at {', '.join(missing)} are gone from {self.kind.profile} "
                "(removed by someone else?); count again"
            )
        hits = {spec: found[event][0] for event, spec in self._events.items()}
        missed = {spec: found[event][1] for event, spec in self._events.items()}
        return Snapshot(at, hits, missed)

    def sharers(self, pid: int) -> tuple[int, ...]:
        """Processes other than ``pid`` that map a probed file (their calls are counted too)."""
        inodes = {p.inode for p in self.points if p.inode is not None}
        return _mappers(inodes, exclude=pid) if inodes else ()

    def close(self) -> None:
        """Disable and remove this set's probes and instance; unmount a private tracefs."""
        tracefs, self._tracefs = self._tracefs, None
        if tracefs is None:
            return
        try:
            with held_signals():
                events = probe_groups(tracefs).get(self.group, [])
                problems = remove_group(tracefs, self.group, events)
        finally:
            tracefs.close()
        if problems:
            raise Refused(
                "; ".join(problems) + "; run knockout again to remove what is left, "
                f"or write -:{self.group}/ to {self.kind.events}"
            )


def _read_or_empty(tracefs: Tracefs, name: str) -> str:
    try:
        return tracefs.read(name)
    except OSError:
        return ""


def _enable_refusal(kind: _Kind, point: ProbePoint, exc: OSError) -> str:
    if exc.errno == _ENOTSUPP:
        why = "it cannot single-step or emulate the instruction there"
    else:
        why = exc.strerror or os.strerror(exc.errno or 0)
    return (
        f"the kernel refuses to arm the {kind.name} at {point.spec} ({point.place}): {why}; "
        "probe another instruction (a function's entry or its call sites)"
    )


def _kprobe_refusal(tracefs: Tracefs, point: ProbePoint) -> Exception | None:
    """Why the kernel refused a kprobe, where its own lists tell: the kprobe blacklist,
    kallsyms, the traceable functions (trace kprobes refuse notrace code).

    Plain text scans, no symbol table: this runs in the guest, where Python is slow.
    """
    symbol = point.place.split(":")[-1].split("+")[0]
    instead = f"count calls of {symbol} at a call site in its caller instead"
    if symbol in _kprobe_blacklist():
        return Refused(
            f"{symbol} is on the kprobe blacklist (/sys/kernel/debug/kprobes/blacklist: "
            f"NOKPROBE_SYMBOL, noinstr or entry code, where a probe would recurse or crash); "
            f"{instead}"
        )
    try:
        text = Path("/proc/kallsyms").read_text()
    except OSError:
        return None  # say what the kernel said
    found = re.search(rf"^([0-9a-f]+) [tTwW] {re.escape(symbol)}(?:\s|$)", text, re.MULTILINE)
    if found is None:
        return NotFound(f"no kernel function {symbol!r} in /proc/kallsyms; check the name")
    aliases = set(re.findall(rf"^{found[1]} [tTwW] (\S+)", text, re.MULTILINE))
    traceable = _read_or_empty(tracefs, "available_filter_functions")
    if traceable and not any(
        re.search(rf"^{re.escape(name)}(?:\s|$)", traceable, re.MULTILINE) for name in aliases
    ):
        return Refused(
            f"{symbol} is notrace (absent from available_filter_functions), and the kernel's "
            f"trace kprobes refuse notrace code; {instead}"
        )
    return None


def _kprobe_blacklist() -> set[str]:
    for point, kind in mounts():
        if kind == "debugfs":
            try:
                text = Path(point, "kprobes", "blacklist").read_text()
            except OSError:
                continue
            return {line.split()[-1] for line in text.splitlines() if line.strip()}
    return set()


def _mappers(inodes: set[tuple[int, int, int]], exclude: int) -> tuple[int, ...]:
    """Pids other than ``exclude`` with an executable mapping of one of ``inodes``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        with contextlib.suppress(OSError):
            if {m.inode for m in _exec_mappings_quiet(int(entry))} & inodes:
                found.append(int(entry))
    return tuple(sorted(found))


def _exec_mappings_quiet(pid: int) -> list[_Mapping]:
    try:
        return _exec_mappings(pid)
    except (NotFound, Refused):
        return []


# --- what the climb calls ---------------------------------------------------------------


def _uprobe_notes(pid: int) -> tuple[str, ...]:
    # Before Linux kernel commit 10cdb82aa77f ("uprobes: turn trace_uprobe's nhit counter
    # to be per-CPU one") (in v6.12), uprobe_profile's hit count was a plain increment
    # shared by all CPUs: threads hitting the same probe at once could lose counts.
    release = os.uname().release
    match = re.match(r"(\d+)\.(\d+)", release)
    threads = len(os.listdir(f"/proc/{pid}/task")) if os.path.isdir(f"/proc/{pid}/task") else 1
    if match and (int(match[1]), int(match[2])) < (6, 12) and threads > 1:
        return (
            f"uprobe hit counts are not atomic before Linux 6.12 (this is {release}) and pid "
            f"{pid} has {threads} threads: concurrent hits may be undercounted",
        )
    return ()


@contextlib.contextmanager
def probing(
    points: Sequence[str], *, pid: int | None = None, kernel: bool = False
) -> Iterator[ProbeSet]:
    """Probes at ``points`` in process ``pid`` or the running kernel, removed on every way out.

    Read counts with :meth:`ProbeSet.read` and subtract with
    :func:`counts_between`, or let :func:`count_calls` do it for a window.
    """
    if (pid is None) == (not kernel):
        raise BadInput("count calls either in a process (pid=PID) or in the kernel (kernel=True)")
    if pid is not None:
        probes = ProbeSet(UPROBE, process_points(pid, points), f"pid {pid}")
    else:
        probes = ProbeSet(KPROBE, kernel_points(points), f"kernel {os.uname().release}")
    with interrupting_signals(), probes:
        yield probes


#: how often an extended counting window looks whether every point has its calls
_EXTEND_STEP = 0.25


def count_calls(
    points: Sequence[str],
    seconds: float,
    *,
    pid: int | None = None,
    kernel: bool = False,
    min_calls: int = 0,
    max_seconds: float | None = None,
) -> CallCounts:
    """Count calls through ``points`` for ``seconds``, in process ``pid`` or the kernel.

    With ``min_calls``, the window goes on past ``seconds`` (up to
    ``max_seconds``) until every point was called that often: a function
    entered once per long pass -- a collection walking 100 000 objects, whose
    every traverse call the probes slow -- may not be entered at all in a
    short window, and a rate or fan-out from zero or one call says nothing.
    A point still short of ``min_calls`` at ``max_seconds`` is named in the
    notes.

    The probes exist only for this window: never count while a trial judges
    a symptom (each hit costs microseconds, see ``bench/out/calls.json``).
    """
    if seconds <= 0:
        raise BadInput(f"seconds must be positive, not {seconds}; count for at least 0.1 s")
    limit = max(seconds, max_seconds if max_seconds is not None else seconds)
    born = start_time(pid) if pid is not None else None
    with probing(points, pid=pid, kernel=kernel) as probes:
        start = probes.read()
        time.sleep(seconds)
        end = probes.read()
        while _short_of(start, end, min_calls) and end.at - start.at < limit:
            time.sleep(min(_EXTEND_STEP, max(0.0, limit - (end.at - start.at))))
            end = probes.read()
        sharers = probes.sharers(pid) if pid is not None else ()
    if pid is not None and start_time(pid) != born:
        raise TargetGone(f"pid {pid} exited during the counting window; count again")
    counts = counts_between(start, end, probes.target, probes.kind.name)
    notes = _uprobe_notes(pid) if pid is not None else ()
    short = _short_of(start, end, min_calls)
    if short:
        notes += (
            f"called fewer than {min_calls} times in {counts.seconds:.1f} s: "
            f"{', '.join(short)} (their rates and fan-outs rest on few calls)",
        )
    if sharers:
        notes += (
            f"{len(sharers)} other process(es) map a probed file; their calls are counted too",
        )
    return CallCounts(
        counts.target,
        counts.mechanism,
        counts.seconds,
        counts.hits,
        counts.missed,
        sharers,
        notes,
    )


def remove_stale_probes() -> list[Outcome]:
    """Remove the probes and tracing instances of counting knockouts that no longer run.

    What ``knockout revert --all`` does for probes (a SIGKILLed count leaves
    its uprobes or kprobes defined; each is named after its owner's pid and
    start time, so a live owner's are never touched).  One outcome per group
    removed; none when tracefs cannot be used here (then there is nothing
    knockout could have left either).
    """
    from knockout.targets import Outcome

    try:
        tracefs = open_tracefs()
    except (KnockoutError, OSError):
        return []
    try:
        removed = remove_stale(tracefs)
        return [Outcome("reverted", f"removed the stale probes {group}") for group in removed]
    finally:
        tracefs.close()
