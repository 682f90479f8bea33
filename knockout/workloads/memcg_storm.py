"""The seed incident's reclaim storm, reproduced (run as root inside the guest).

Many live child memcgs under a pod whose ``memory.max`` leaves little room,
and a workload that needs reclaim all the time: two workers holding
anonymous memory (no swap: it cannot be reclaimed) and reading files whose
page cache does not fit the room.  Every charge over the limit reclaims
over the pod, and every reclaim walks all the pod's memcgs: sys CPU grows
with their number while the work done falls.

The recipe (``/work/shared/guest-kernel-facts.md``, "The incident's storm"):

1. a ``brd`` ramdisk with ext4 (reclaimable page cache needs a block
   device: tmpfs pages need swap, the 9p root has no page cache), one data
   file per worker written, then ``drop_caches=3`` before any memcg exists;
2. cgroup v2: ``+memory`` at the root and in ``pod``; the workers in
   ``pod/app``; ``N`` empty live siblings ``pod/c0..`` each given a dentry,
   a negative dentry and an inode (so its shrinker bits are set) by the C
   helper ``storm populate``;
3. ``pod/memory.max`` = the pod's charge before the workload (the children's
   own memory grows with N) + the workers' anonymous memory + room;
4. workers: touch their anonymous memory, read their share of the room at
   once (so the pod starts at its limit, not after a minute of filling it),
   then loop: ``pread`` 64 KiB, spin about 10 ms in pure user space
   (calibrated; never the clock, which is a syscall under the guest's hpet
   clocksource).

As a library::

    with MemcgStorm(StormConfig(children=2000)) as storm:
        storm.prepare()
        storm.start_workers()
        sample = storm.measure(2.0)      # sys %, reclaim events/s, MB/s, OOM kills

On the command line (``python -m knockout.workloads.memcg_storm``):
``run`` sets up, measures phases of N children (``--phases 0,2000``) and
tears down, printing JSON; ``start`` leaves a storm running (state in
``/run/knockout-storm/state.json``) and prints the ``--work`` command and the
pod path for a trial; ``measure`` reads a running storm; ``stop`` tears
it down and leaves the guest as it found it.

What the figures are: ``sys_pct``/``user_pct``: shares of all CPUs' time
(``/proc/stat``); ``reclaim_events_per_s``: the pod's ``memory.events``
``max`` counter (times a charge hit ``memory.max`` and reclaimed), per
second; ``pgscan_per_s``/``pgsteal_per_s``: the pod's ``memory.stat``;
``read_mb_s``: bytes the workers read (their shared counters) per second;
``oom_kills``: the pod's ``memory.events`` ``oom_kill`` during the window.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType

from knockout.errors import BadInput, KnockoutError, NotFound, Refused

__all__ = [
    "CGROUP_ROOT",
    "HELPER_SOURCE",
    "WORKDIR",
    "MemcgStorm",
    "StormConfig",
    "StormSample",
    "build_helper",
    "cpu_times",
    "helper_path",
    "kmem_from_cmdline",
    "main",
    "memory_max_for",
    "parse_keyed",
    "sample_between",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: where a storm keeps its mount, counters and state (the guest's own tmpfs)
WORKDIR = Path("/run/knockout-storm")
HELPER_SOURCE = Path(__file__).with_name("storm.c")
_MIB = 1 << 20
#: nr_dying_descendants may take this long to fall back after teardown
_DYING_WAIT = 20.0
#: the reaper: starts each argv, prints their pids, waits for them all; a worker killed
#: by SIGKILL (the OOM killer's signal) is started again, as a pod's restart policy would;
#: SIGTERM kills the workers and ends it
_REAPER = """\
import json, os, signal, subprocess, sys
argvs = json.loads(sys.argv[1])
stopping = False
def start(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
ps = [start(a) for a in argvs]
def stop(signum, frame):
    global stopping
    stopping = True
    for p in ps:
        if p.returncode is None:
            p.kill()
signal.signal(signal.SIGTERM, stop)
print(' '.join(str(p.pid) for p in ps), flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    for i, p in enumerate(ps):
        if p.pid == pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode == -signal.SIGKILL and not stopping:
                ps[i] = start(argvs[i])
                print(f'worker {i} (pid {pid}) was killed; restarted as {ps[i].pid}',
                      file=sys.stderr, flush=True)
"""


class StormError(KnockoutError, RuntimeError):
    """A step of the storm's set-up or teardown failed."""


@dataclass(frozen=True)
class StormConfig:
    """Sizes of a storm; the defaults fit a 2-vCPU TCG guest with 4 GiB.

    ``children``: live child memcgs (0 is the healthy workload).
    ``workers``: reader processes in ``pod/app``, each with its own file.
    ``anon_mib``: anonymous memory each worker touches and keeps.
    ``file_mib``: size of each worker's data file.
    ``room_mib``: what ``memory.max`` leaves above the charge and the anon.
    ``spin_ms``: user-space work between two reads.
    """

    children: int = 2000
    workers: int = 2
    anon_mib: int = 120
    file_mib: int = 48
    room_mib: int = 56
    spin_ms: float = 10.0
    pod: str = "pod"

    def __post_init__(self) -> None:
        if self.children < 0 or self.workers < 1:
            raise BadInput("a storm needs children >= 0 and workers >= 1")
        if min(self.anon_mib, self.file_mib, self.room_mib) < 1 or self.spin_ms <= 0:
            raise BadInput("anon, file and room sizes (MiB) and spin_ms must be positive")
        if self.workers * self.file_mib + 16 > self.ramdisk_mib:
            raise BadInput("the data files do not fit the ramdisk; give smaller files")
        if self.file_mib * self.workers <= self.room_mib:
            raise BadInput(
                f"{self.workers} x {self.file_mib} MiB of files fit {self.room_mib} MiB of "
                "room: nothing would need reclaim; give bigger files or less room"
            )

    @property
    def ramdisk_mib(self) -> int:
        """The brd ramdisk's size: the files and ext4's own blocks."""
        return max(256, self.workers * self.file_mib * 2)


@dataclass(frozen=True)
class StormSample:
    """What one measured window of a running storm showed."""

    seconds: float
    sys_pct: float
    user_pct: float
    reclaim_events_per_s: float
    pgscan_per_s: float
    pgsteal_per_s: float
    read_mb_s: float
    oom_kills: int


# -- pure helpers ---------------------------------------------------------------


def parse_keyed(text: str) -> dict[str, int]:
    """A cgroup flat-keyed file (``memory.events``, ``memory.stat``) as a dict.

    >>> parse_keyed("low 0\\nhigh 0\\nmax 42\\noom 0\\noom_kill 1\\n")["max"]
    42
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def kmem_from_cmdline(cmdline: str) -> bool:
    """Whether memcg kmem accounting is on, from the kernel command line.

    ``cgroup.memory=nokmem`` (a comma list, e.g. ``nosocket,nokmem``) turns
    it off; Debian's default is on.

    >>> kmem_from_cmdline("console=ttyS0 cgroup.memory=nosocket,nokmem quiet")
    False
    >>> kmem_from_cmdline("console=ttyS0 quiet")
    True
    """
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == "cgroup.memory" and "nokmem" in value.split(","):
            return False
    return True


def memory_max_for(charge: int, config: StormConfig) -> int:
    """``pod/memory.max``: the pod's charge before the workload + the workers' anon + room.

    A fixed limit would OOM at large N: the children's own memory is
    charged to the pod and grows with their number.

    >>> memory_max_for(23 << 20, StormConfig()) >> 20
    319
    """
    return charge + (config.workers * config.anon_mib + config.room_mib) * _MIB


def cpu_times(stat_text: str) -> tuple[int, int, int]:
    """(user, system, total) jiffies of the ``cpu`` line of ``/proc/stat``.

    ``user`` includes nice; ``total`` is user..steal (guest time lies inside user).

    >>> cpu_times("cpu  10 2 30 50 3 1 4 0 0 0\\ncpu0 1 2 3 4 5 6 7 8 0 0\\n")
    (12, 30, 100)
    """
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:9]]
            return f[0] + f[1], f[2], sum(f)
    raise StormError("no 'cpu' line in /proc/stat; is /proc mounted?")


@dataclass(frozen=True)
class _Snapshot:
    when: float
    cpu: tuple[int, int, int]
    events: Mapping[str, int]
    stat: Mapping[str, int]
    bytes_read: int


def sample_between(a: _Snapshot, b: _Snapshot) -> StormSample:
    """The window's figures from two snapshots (see the module docstring)."""
    seconds = max(b.when - a.when, 1e-9)
    total = max(b.cpu[2] - a.cpu[2], 1)

    def rate(now: Mapping[str, int], then: Mapping[str, int], key: str) -> float:
        return (now.get(key, 0) - then.get(key, 0)) / seconds

    return StormSample(
        seconds=round(seconds, 3),
        sys_pct=100.0 * (b.cpu[1] - a.cpu[1]) / total,
        user_pct=100.0 * (b.cpu[0] - a.cpu[0]) / total,
        reclaim_events_per_s=rate(b.events, a.events, "max"),
        pgscan_per_s=rate(b.stat, a.stat, "pgscan"),
        pgsteal_per_s=rate(b.stat, a.stat, "pgsteal"),
        read_mb_s=(b.bytes_read - a.bytes_read) / 1e6 / seconds,
        oom_kills=b.events.get("oom_kill", 0) - a.events.get("oom_kill", 0),
    )


# -- the C helper -----------------------------------------------------------------


def _helper_key() -> str:
    return hashlib.sha256(HELPER_SOURCE.read_bytes()).hexdigest()[:12]


def _helper_dirs() -> list[Path]:
    """Where the helper may be: knockout's cache (the host's, seen read-only in a guest), /run."""
    from knockout.vm import cache_dir

    return [cache_dir() / "storm" / _helper_key(), WORKDIR / "bin" / _helper_key()]


def helper_path() -> Path | None:
    """The built ``storm`` helper for the current source, or None."""
    for directory in _helper_dirs():
        if os.access(directory / "storm", os.X_OK):
            return directory / "storm"
    return None


def build_helper() -> Path:
    """Build ``storm.c`` with gcc (once per source) and return the binary.

    Build it on the host before booting a guest: the guest sees the host's
    cache read-only.  In a guest without it, it is built under /run.
    """
    found = helper_path()
    if found is not None:
        return found
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NotFound("gcc is needed to build the storm helper; apt-get install gcc")
    errors = []
    for directory in _helper_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f"storm.tmp{os.getpid()}"
            subprocess.run(
                [gcc, "-O2", "-Wall", "-Werror", "-o", str(tmp), str(HELPER_SOURCE)],
                check=True,
                capture_output=True,
                text=True,
            )
            tmp.replace(directory / "storm")
            return directory / "storm"
        except OSError as exc:
            errors.append(f"{directory}: {exc.strerror}")
        except subprocess.CalledProcessError as exc:
            raise StormError(f"gcc failed on {HELPER_SOURCE}: {exc.stderr.strip()}") from None
    raise Refused(f"cannot write the storm helper anywhere ({'; '.join(errors)}); run as root")


# -- the storm ------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise StormError(f"cannot write {text.strip()!r} to {path}: {exc.strerror}") from None


def _run(argv: Sequence[str], what: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise StormError(f"{what} failed: {shlex.join(argv)}: {last}")
    return proc.stdout


@dataclass
class _State:
    """What a storm changed, so that another process can undo it (``stop``)."""

    config: StormConfig
    helper: str
    enabled_memory_at_root: bool = False
    loaded_brd: bool = False
    mounted: bool = False
    children: int = 0
    spin: int = 0
    workers: list[int] = field(default_factory=list)
    reaper: int = 0  # the process that restarts killed workers (0: none)
    dying_before: int = 0


class MemcgStorm:
    """A storm in this (guest) system: set up, run, measure, torn down.

    Each step records what it changed in ``WORKDIR/state.json`` first, so
    :meth:`teardown` (also from another process: :meth:`attach`) undoes
    exactly that.  Use as a context manager to tear down on every way out.
    """

    def __init__(self, config: StormConfig, *, helper: Path | None = None) -> None:
        self.config = config
        self.root = CGROUP_ROOT
        self.pod = CGROUP_ROOT / config.pod
        self.app = self.pod / "app"
        self.mnt = WORKDIR / "data"
        self.counters = WORKDIR / "counters"
        self.timings: dict[str, float] = {}
        self._reaper: subprocess.Popen[bytes] | None = None
        self._state = _State(config, str(helper or build_helper()))

    # -- lifecycle ----------------------------------------------------------------

    @classmethod
    def attach(cls) -> MemcgStorm:
        """The storm a ``start`` left running, from its state file."""
        path = WORKDIR / "state.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raise NotFound(f"no storm is running here ({path} is missing); start one") from None
        config = StormConfig(**raw.pop("config"))
        storm = cls(config, helper=Path(raw["helper"]))
        storm._state = _State(config=config, **raw)
        return storm

    def __enter__(self) -> MemcgStorm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def _save(self) -> None:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        raw = asdict(self._state)
        tmp = WORKDIR / "state.json.tmp"
        tmp.write_text(json.dumps(raw))
        tmp.replace(WORKDIR / "state.json")

    @property
    def helper(self) -> str:
        """The path of the ``storm`` C helper."""
        return self._state.helper

    @property
    def children(self) -> int:
        """Child memcgs that exist now."""
        return self._state.children

    @property
    def spin_iterations(self) -> int:
        """The workers' calibrated spin (iterations for ``spin_ms``)."""
        return self._state.spin

    def work_command(self, seconds: float = 0.5) -> str:
        """A command printing the workers' read rate (MB/s) over ``seconds``: for ``--work``."""
        return shlex.join([self.helper, "rate", str(self.counters), f"{seconds:g}"])

    # -- set-up ---------------------------------------------------------------------

    def prepare(self) -> dict[str, float]:
        """Ramdisk, data files, caches dropped, spin calibrated, ``pod`` and ``pod/app``.

        Refuses when a storm (or a leftover of one) is already here.
        Returns the seconds each step took.
        """
        self._check_clean()
        self._state.dying_before = self._dying()
        self._save()
        started = time.monotonic()
        self._ramdisk()
        self._data_files()
        self.timings["ramdisk_and_files_s"] = time.monotonic() - started
        t0 = time.monotonic()
        self._state.spin = int(
            _run([self.helper, "calibrate", str(self.config.spin_ms)], "calibrate")
        )
        self.timings["calibrate_s"] = time.monotonic() - t0
        self._cgroups()
        self._save()
        return dict(self.timings)

    def _check_clean(self) -> None:
        if os.geteuid() != 0:
            raise Refused("the storm changes cgroups and loads brd; run it as root in the guest")
        if (WORKDIR / "state.json").exists() or self.pod.exists():
            raise Refused(
                f"a storm is already set up here ({WORKDIR / 'state.json'} or {self.pod} "
                "exists); run 'python -m knockout.workloads.memcg_storm stop' first"
            )
        if "memory" not in (self.root / "cgroup.controllers").read_text().split():
            raise NotFound("cgroup v2 has no memory controller here; boot with cgroup v2")

    def _ramdisk(self) -> None:
        if Path("/sys/module/brd").exists():
            raise Refused("brd is loaded already (a ramdisk in use?); rmmod brd first")
        kib = self.config.ramdisk_mib * 1024
        self._state.loaded_brd = True
        self._save()
        _run(["modprobe", "brd", "rd_nr=1", f"rd_size={kib}"], "loading the ramdisk module")
        if "ext4" not in Path("/proc/filesystems").read_text().split():
            # the kernel's own request_module runs outside the guest's chroot and fails
            _run(["modprobe", "ext4"], "loading ext4")
        _run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "/dev/ram0"], "mkfs.ext4")
        self.mnt.mkdir(parents=True, exist_ok=True)
        self._state.mounted = True
        self._save()
        _run(["mount", "-t", "ext4", "/dev/ram0", str(self.mnt)], "mounting the ramdisk")
        (self.mnt / "children").mkdir()

    def _data_files(self) -> None:
        block = b"\x5a" * _MIB
        for i in range(self.config.workers):
            with open(self.mnt / f"data{i}", "wb") as f:
                for _ in range(self.config.file_mib):
                    f.write(block)
        os.sync()
        _write(Path("/proc/sys/vm/drop_caches"), "3\n")
        self.counters.write_bytes(bytes(8 * self.config.workers))

    def _cgroups(self) -> None:
        control = self.root / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            self._state.enabled_memory_at_root = True
            self._save()
            _write(control, "+memory\n")
        self.pod.mkdir()
        _write(self.pod / "cgroup.subtree_control", "+memory\n")
        self.app.mkdir()

    def add_children(self, total: int) -> float:
        """Grow the pod to ``total`` live child memcgs (workers stopped); returns seconds."""
        if self._state.workers:
            raise BadInput("stop the workers before adding children")
        have = self._state.children
        if total < have:
            raise BadInput(f"the pod has {have} children already; children are only added")
        started = time.monotonic()
        if total > have:
            self._state.children = total  # recorded first: teardown removes what may exist
            self._save()
            _run(
                [
                    self.helper,
                    "populate",
                    str(self.pod),
                    str(have),
                    str(total - have),
                    str(self.mnt / "children"),
                ],
                "populating the child memcgs",
            )
        return time.monotonic() - started

    def start_workers(self, timeout: float = 60.0) -> float:
        """Size ``memory.max``, start the workers; returns seconds until all of them read."""
        if self._state.workers:
            raise BadInput("the workers run already")
        _write(self.pod / "memory.max", "max\n")
        _write(Path("/proc/sys/vm/drop_caches"), "1\n")  # page cache only: dentries stay
        charge = int((self.pod / "memory.current").read_text())
        _write(self.pod / "memory.max", f"{memory_max_for(charge, self.config)}\n")
        self.counters.write_bytes(bytes(8 * self.config.workers))
        started = time.monotonic()
        argvs = [
            [
                self.helper,
                "worker",
                str(self.app),
                str(self.mnt / f"data{i}"),
                str(self.config.anon_mib),
                str(self.config.room_mib // self.config.workers),
                str(self._state.spin),
                str(self.counters),
                str(i),
            ]
            for i in range(self.config.workers)
        ]
        self._state.workers = self._spawn(argvs)
        self._save()
        self._wait_all_reading(started + timeout)
        return time.monotonic() - started

    def _spawn(self, argvs: list[list[str]]) -> list[int]:
        """Start the workers under a small reaper process in the root cgroup; their pids.

        The reaper waits for them, so a worker that dies is reaped even after
        the process that started it (``start``) has exited: an unreaped
        zombie would pin ``pod/app`` as a dying memcg.
        """
        log = open(WORKDIR / "workers.log", "ab")  # noqa: SIM115 - the reaper keeps it
        with log:
            self._reaper = subprocess.Popen(
                [sys.executable, "-c", _REAPER, json.dumps(argvs)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self._reaper.stdout is not None
        self._state.reaper = self._reaper.pid
        line = self._reaper.stdout.readline()
        self._reaper.stdout.close()
        try:
            return [int(pid) for pid in line.split()]
        except ValueError:
            raise StormError(
                f"the storm's workers did not start; see {WORKDIR}/workers.log"
            ) from None

    def _wait_all_reading(self, deadline: float) -> None:
        while True:
            counts = self._counts()
            if all(counts):
                return
            gone = [pid for pid in self._state.workers if not _alive(pid)]
            if gone:
                raise StormError(
                    f"storm workers {gone} exited before reading; see the pod's memory.events "
                    f"({self.pod / 'memory.events'}) for OOM kills and give more room"
                )
            if time.monotonic() > deadline:
                raise StormError("the storm's workers did not start reading in time")
            time.sleep(0.1)

    def stop_workers(self) -> None:
        """Kill the workers (and their reaper, which restarts killed ones) and wait for them."""
        if self._state.reaper:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._state.reaper, signal.SIGTERM)  # it kills its workers, reaps, ends
            if self._reaper is None:
                _reap(self._state.reaper)
        for pid in self._state.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self._state.workers:
            _reap(pid)
        if self._reaper is not None:  # ours: it exits once its workers are gone
            self._reaper.wait()
            self._reaper = None
        self._state.workers = []
        self._state.reaper = 0
        self._save()

    # -- measuring ------------------------------------------------------------------

    def _counts(self) -> list[int]:
        data = self.counters.read_bytes()
        return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            when=time.monotonic(),
            cpu=cpu_times(Path("/proc/stat").read_text()),
            events=parse_keyed((self.pod / "memory.events").read_text()),
            stat=parse_keyed((self.pod / "memory.stat").read_text()),
            bytes_read=sum(self._counts()),
        )

    def measure(self, seconds: float) -> StormSample:
        """One window of ``seconds`` of the running storm."""
        before = self._snapshot()
        time.sleep(seconds)
        return sample_between(before, self._snapshot())

    def kmem(self) -> dict[str, object]:
        """Whether kmem accounting is on: the boot argument, and what a child shows.

        ``observed`` is whether the first child's ``memory.stat`` charges slab
        (its dentries and inode); None without children.
        """
        cmdline = Path("/proc/cmdline").read_text()
        observed: bool | None = None
        if self._state.children:
            stat = parse_keyed((self.pod / "c0" / "memory.stat").read_text())
            observed = stat.get("slab", 0) > 0
        return {
            "kmem": kmem_from_cmdline(cmdline),
            "observed_in_child": observed,
            "cmdline_nokmem": not kmem_from_cmdline(cmdline),
        }

    # -- teardown -------------------------------------------------------------------

    def teardown(self) -> dict[str, object]:
        """Undo everything recorded: workers, mount, memcgs, brd, root's ``+memory``.

        Waits (up to 20 s) until the root's ``nr_dying_descendants`` is back
        to what it was before.  Returns what it found afterwards.
        """
        state = self._state
        self.stop_workers()
        if state.mounted and os.path.ismount(self.mnt):
            _run(["umount", str(self.mnt)], "unmounting the ramdisk")  # frees dentries, cache
        self._reclaim_pod()
        self._remove_cgroups()
        if state.enabled_memory_at_root:
            with contextlib.suppress(OSError):  # EBUSY if another cgroup uses it now
                (self.root / "cgroup.subtree_control").write_text("-memory\n")
        if state.loaded_brd and Path("/sys/module/brd").exists():
            _run(["rmmod", "brd"], "unloading the ramdisk module")
        dying = self._wait_dying(state.dying_before)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        return {
            "dying_memcgs_left": dying - state.dying_before,
            "pod_exists": self.pod.exists(),
            "brd_loaded": Path("/sys/module/brd").exists(),
        }

    def _reclaim_pod(self) -> None:
        """Reclaim what is still charged to the pod (pages of programs the workers ran).

        A removed memcg with pages charged stays behind as a dying memcg (and
        is still walked by reclaim) until they are reclaimed.
        """
        with contextlib.suppress(OSError, ValueError):  # EAGAIN: could not reclaim it all
            charge = int((self.pod / "memory.current").read_text())
            if charge:
                (self.pod / "memory.reclaim").write_text(f"{charge}\n")

    def _remove_cgroups(self) -> None:
        if not self.pod.exists():
            return
        for child in sorted(self.pod.iterdir()):
            if child.is_dir():
                _rmdir(child)
        _rmdir(self.pod)

    def _dying(self) -> int:
        return parse_keyed((self.root / "cgroup.stat").read_text()).get("nr_dying_descendants", 0)

    def _wait_dying(self, before: int) -> int:
        deadline = time.monotonic() + _DYING_WAIT
        while True:
            now = self._dying()
            if now <= before or time.monotonic() > deadline:
                return now
            time.sleep(0.2)


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (for a process that is not our child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _running(pid)
    return done == 0


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # not our child (another process started it): wait it out
        for _ in range(100):
            if not _running(pid):
                return
            time.sleep(0.05)


def _rmdir(path: Path) -> None:
    for _ in range(50):  # a cgroup whose last task just died is briefly busy
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    raise StormError(f"cannot remove {path}; a process still in it? (cat {path}/cgroup.procs)")


# -- the command line -------------------------------------------------------------


def _phase(storm: MemcgStorm, children: int, args: argparse.Namespace) -> dict[str, object]:
    setup = storm.add_children(children)
    start = storm.start_workers()
    time.sleep(args.warmup)
    windows = [asdict(storm.measure(args.window)) for _ in range(args.windows)]
    storm.stop_workers()
    return {
        "children": children,
        "populate_s": round(setup, 3),
        "workers_start_s": round(start, 3),
        "windows": windows,
        "kmem": storm.kmem(),
    }


def _config(args: argparse.Namespace) -> StormConfig:
    return replace(
        StormConfig(),
        children=args.children,
        workers=args.workers,
        anon_mib=args.anon_mib,
        file_mib=args.file_mib,
        room_mib=args.room_mib,
        spin_ms=args.spin_ms,
    )


def _cmd_run(args: argparse.Namespace) -> dict[str, object]:
    phases = sorted({int(p) for p in args.phases.split(",")}) if args.phases else [args.children]
    config = replace(_config(args), children=max(phases))
    with MemcgStorm(config) as storm:
        timings = storm.prepare()
        results = [_phase(storm, n, args) for n in phases]
        cleanup = storm.teardown()
    return {"config": asdict(config), "setup": timings, "phases": results, "teardown": cleanup}


def _cmd_start(args: argparse.Namespace) -> dict[str, object]:
    storm = MemcgStorm(_config(args))
    try:
        timings = storm.prepare()
        timings["populate_s"] = storm.add_children(args.children)
        timings["workers_start_s"] = storm.start_workers()
    except BaseException:
        storm.teardown()
        raise
    return {
        "pod": str(storm.pod),
        "work": storm.work_command(),
        "setup": timings,
        "spin_iterations": storm.spin_iterations,
        **storm.kmem(),
    }


def _cmd_measure(args: argparse.Namespace) -> dict[str, object]:
    storm = MemcgStorm.attach()
    return {
        "children": storm.children,
        "windows": [asdict(storm.measure(args.window)) for _ in range(args.windows)],
    }


def _cmd_stop(args: argparse.Namespace) -> dict[str, object]:
    return MemcgStorm.attach().teardown()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m knockout.workloads.memcg_storm",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="verb", required=True)
    defaults = StormConfig()
    for verb, helptext in (
        ("run", "set up, measure phases, tear down"),
        ("start", "set up and leave the storm running"),
        ("measure", "measure a running storm"),
        ("stop", "tear a running storm down"),
    ):
        s = sub.add_parser(verb, help=helptext)
        if verb in ("run", "start"):
            s.add_argument("--children", type=int, default=defaults.children)
            s.add_argument("--workers", type=int, default=defaults.workers)
            s.add_argument("--anon-mib", type=int, default=defaults.anon_mib)
            s.add_argument("--file-mib", type=int, default=defaults.file_mib)
            s.add_argument("--room-mib", type=int, default=defaults.room_mib)
            s.add_argument("--spin-ms", type=float, default=defaults.spin_ms)
        if verb == "run":
            s.add_argument("--phases", help="child counts to measure in turn, e.g. 0,2000")
            s.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
        if verb in ("run", "measure"):
            s.add_argument("--window", type=float, default=2.0)
            s.add_argument("--windows", type=int, default=5)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; prints one JSON object."""
    args = _parser().parse_args(argv)
    verbs = {"run": _cmd_run, "start": _cmd_start, "measure": _cmd_measure, "stop": _cmd_stop}
    try:
        result = verbs[args.verb](args)
    except KnockoutError as exc:
        print(f"memcg_storm: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
