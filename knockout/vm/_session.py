"""A running guest: boot, run commands through the virtio port, power off.

One guest runs at a time on the machine: every boot takes an exclusive
``flock`` on :data:`LOCK_PATH` and holds it until QEMU has exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from knockout.errors import BadInput, KnockoutError, NotFound, Refused, TargetGone
from knockout.vm._initramfs import build_initramfs, cache_dir
from knockout.vm._kernels import find_kernel
from knockout.vm._platform import get_platform, prepared_root
from knockout.vm._qemu import (
    GuestConfig,
    choose_accel,
    kernel_release,
    parse_mem,
    pvh_vmlinux,
    qemu_command,
)

__all__ = [
    "LOCK_PATH",
    "ROOT_CACHES",
    "GuestResult",
    "GuestSession",
    "GuestTimeout",
    "run_in_guest",
]

#: every process that runs a QEMU guest here holds an exclusive flock on this
LOCK_PATH = Path("/tmp/knockout-guest.lock")

#: the environment a guest command starts with (the host's is not passed)
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PYTHONDONTWRITEBYTECODE": "1",
}

#: 9p cache modes for the host's ``/``: ``mmap`` sees host changes at once;
#: ``loose`` is faster for exec-heavy work but keeps what it read (a file
#: rebuilt on the host during the session may look stale in the guest).
#: ``/usr`` (programs, libraries, /lib/modules) is always ``loose``: packages
#: installed on the host while a guest runs are not seen by it.
ROOT_CACHES = ("mmap", "loose", "none")

_KEEP_LOGS = 30
_TAIL_LINES = 40
#: seconds the console gets to receive the task dumps of a timed-out guest
_DUMP_WAIT = 3.0

#: console lines that say why a guest died, most telling first
_CAUSES = (
    "Kernel panic - not syncing",
    "BUG: ",
    "Oops: ",
    "general protection fault",
    "sysrq: ",
    "knockout-init: ",
)

OutputCallback = Callable[[bytes], object]


class GuestTimeout(KnockoutError, TimeoutError):
    """The guest did not boot, or a command did not finish, in time."""


@dataclass(frozen=True)
class GuestResult:
    """What one command in the guest did."""

    returncode: int
    output: str  #: stdout and stderr interleaved, decoded as UTF-8 (errors replaced)
    seconds: float  #: wall time of the command, seen from the host
    boot_seconds: float  #: QEMU start to the guest ready for its first command
    console_log: Path  #: the guest's serial console (kernel messages)


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when knockout dies, whatever the cause."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _take_lock(timeout: float | None, on_wait: OutputCallback | None) -> int:
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if not waited and on_wait is not None:
                on_wait(f"waiting for {LOCK_PATH}: another guest is running\n".encode())
            waited = True
            if deadline is not None and time.monotonic() > deadline:
                os.close(fd)
                raise Refused(
                    f"another guest held {LOCK_PATH} for {timeout:.0f} s; "
                    f"wait for it to finish (fuser -v {LOCK_PATH} shows who)"
                ) from None
            time.sleep(0.2)


def _new_console_log() -> Path:
    logs = cache_dir() / "guest-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in sorted(logs.glob("console-2*.log"))[:-_KEEP_LOGS]:
        old.unlink(missing_ok=True)
        old.with_suffix(".qemu").unlink(missing_ok=True)
    path = logs / f"console-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    latest = logs / "console-latest.log"
    latest.unlink(missing_ok=True)
    latest.symlink_to(path.name)
    return path


#: in a prepared root: the venv of knockout's dependencies (its bin/ has ``knockout``)
GUEST_VENV = Path("/opt/knockout/venv")
#: in a prepared root: where the booting clone's knockout tree is also seen (the venv's
#: ``.pth`` names it, so the venv's Python imports that tree's ``knockout``)
GUEST_TREE = Path("/opt/knockout/tree")


def base_env(prepared: bool) -> dict[str, str]:
    """The environment a guest command starts with; in a prepared root the venv is first on PATH.

    >>> base_env(True)["PATH"].split(":")[0]
    '/opt/knockout/venv/bin'
    """
    if not prepared:
        return dict(BASE_ENV)
    return {**BASE_ENV, "PATH": f"{GUEST_VENV}/bin:{BASE_ENV['PATH']}"}


def _script(
    command: str | Sequence[str], env: Mapping[str, str], cwd: str, base: Mapping[str, str]
) -> str:
    body = command if isinstance(command, str) else shlex.join(command)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in {**base, **env}.items()]
    lines.append(f"cd {shlex.quote(cwd)} || exit 125")
    return "\n".join([*lines, body, ""])


class GuestSession:
    """A booted guest that runs commands one after another.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with GuestSession(rwdirs=[out]) as guest:
            print(guest.run("uname -r").output)

    A command that times out, or an interrupt, kills the guest (its state is
    unknown); :attr:`alive` tells, and a new session boots a fresh one.

    ``arch``: the guest's architecture (``arm64``, ``x86_64``...; default the
    host's).  A guest of the host's architecture shares the host's ``/``; one
    of another boots over the root ``make setup`` prepared for it
    (:mod:`knockout.vm.guestroot`), writable through a tmpfs overlay, with
    knockout's tree, its kmod and debug caches and the current directory
    shared read-only at their own paths, and ``knockout`` on ``PATH``.
    ``kernel``: a kernel image path, or a release prefix such as ``6.12``
    naming one installed in the guest's root (default: the newest Debian 6.1,
    :func:`knockout.vm.find_kernel`).
    ``rwdirs``: host directories shared read-write at the same paths.
    ``perf_friendly``: hide /lib/modules/<release>/kernel behind an empty
    tmpfs so ``perf record`` starts in seconds (in-tree modprobe then fails;
    load such modules first, or mount/umount the tmpfs yourself).
    ``root_cache``: see :data:`ROOT_CACHES`.  ``pvh``: boot the vmlinux
    extracted from ``kernel`` directly (about 3 s faster; no KASLR).
    ``kernel_args``: appended to the kernel command line.
    ``accel``: QEMU's ``-accel`` value, e.g. ``tcg``, ``tcg,thread=single``
    (one host thread runs every vCPU) or ``kvm``; None chooses
    (:func:`knockout.vm.choose_accel`: kvm when the CPU flags allow, else tcg,
    whose default on an x86_64 host is multi-threaded).
    ``boot_timeout``: seconds from QEMU's start to the first command.
    ``lock_timeout``: seconds to wait for :data:`LOCK_PATH` (None: forever);
    ``on_wait`` is told once if the wait begins.
    """

    def __init__(
        self,
        *,
        arch: str | None = None,
        kernel: Path | str | None = None,
        mem: str = "4G",
        cpus: int = 2,
        rwdirs: Sequence[Path | str] = (),
        perf_friendly: bool = False,
        root_cache: str = "mmap",
        pvh: bool = True,
        kernel_args: Sequence[str] = (),
        accel: str | None = None,
        boot_timeout: float = 120.0,
        lock_timeout: float | None = None,
        on_wait: OutputCallback | None = None,
        root: Path | None = None,
        root_writable: bool = False,
    ) -> None:
        if cpus < 1:
            raise BadInput(f"--cpus must be at least 1, not {cpus}")
        self.platform = get_platform(arch)
        #: the prepared root this guest boots over, or None for the host's ``/``
        self.root = root if root is not None else prepared_root(self.platform)
        self.root_writable = root_writable and self.root is not None
        on = self.root or Path("/")
        self.kernel = find_kernel(kernel, boot=on / "boot", modules=on / "lib/modules")
        self.release = kernel_release(self.kernel)
        self.mem = parse_mem(mem)
        self.cpus = cpus
        self.rwdirs = [_checked_rwdir(d) for d in rwdirs]
        #: host directories shared read-only: those the guest's own tmpfs mounts would
        #: hide, or (prepared root) all that knockout needs from the host
        self.rodirs = (
            hidden_host_dirs(self.rwdirs)
            if self.root is None
            else shared_host_dirs(self.rwdirs, writable_root=self.root_writable)
        )
        self.perf_friendly = perf_friendly
        if root_cache not in ROOT_CACHES:
            raise BadInput(f"root_cache {root_cache!r} is not one of {', '.join(ROOT_CACHES)}")
        self.root_cache = root_cache
        self.pvh = pvh and self.platform.pvh
        #: the file QEMU boots: the PVH vmlinux extracted from ``kernel``, or ``kernel``
        self.boot_image = self.kernel
        self.kernel_args = tuple(kernel_args)
        self.accel = _checked_accel(accel) if accel is not None else None
        self.boot_timeout = boot_timeout
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.boot_seconds = 0.0
        self.console_log = Path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._lock_fd: int | None = None
        self._tmp: Path | None = None
        self._nonce = secrets.token_hex(8)
        self._next_id = 0
        self._pending = b""

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> GuestSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        """True while QEMU runs and the guest answers commands."""
        return self._proc is not None and self._proc.poll() is None and self._conn is not None

    def start(self) -> None:
        """Take the lock, boot the guest and wait until it is ready."""
        if self._proc is not None:
            raise BadInput("this guest session was already started; make a new one")
        initrd = build_initramfs(self.release, root=self.root or Path("/"))
        if self.pvh:
            self.boot_image = pvh_vmlinux(self.kernel) or self.kernel
        self._lock_fd = _take_lock(self.lock_timeout, self.on_wait)
        try:
            self._boot(initrd)
        except BaseException:
            self.close()
            raise

    def _boot(self, initrd: Path) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="knockout-guest-"))
        ctl = self._tmp / "ctl"
        ctl.mkdir()
        (ctl / "config.sh").write_text(self._config_sh())
        sock_path = self._tmp / "ko.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        listener.listen(1)
        self.console_log = _new_console_log()
        config = GuestConfig(
            kernel=self.boot_image,
            initrd=initrd,
            mem=self.mem,
            cpus=self.cpus,
            accel=self.accel or choose_accel(),
            rwdirs=self.rwdirs,
            rodirs=self.rodirs,
            kernel_args=self.kernel_args,
            platform=self.platform,
            root=self.root or Path("/"),
            root_writable=self.root_writable,
        )
        argv = qemu_command(config, ctl_dir=ctl, socket=sock_path, console=self.console_log)
        started = time.monotonic()
        with self.console_log.with_suffix(".qemu").open("wb") as stderr:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                pass_fds=[self._lock_fd] if self._lock_fd is not None else [],
            )
        try:
            self._conn = self._accept(listener, started + self.boot_timeout)
        finally:
            listener.close()
        ready = f"KNOCKOUT-READY {self._nonce}".encode()
        self._read_until(ready, started + self.boot_timeout, "boot")
        self.boot_seconds = time.monotonic() - started

    def _config_sh(self) -> str:
        mounts = [f"mount_rw korw{i} {shlex.quote(str(d))}" for i, d in enumerate(self.rwdirs)]
        # QEMU exports these read-only (readonly=on), so writes fail with EROFS.
        mounts += [f"mount_rw koro{i} {shlex.quote(str(d))}" for i, d in enumerate(self.rodirs)]
        if self.root is not None and not self.root_writable:
            mounts.append(f"mount_bind {shlex.quote(str(knockout_tree()))} {GUEST_TREE}")
        lines = [
            f"NONCE={self._nonce}",
            f"ROOT_MODE={self._root_mode()}",
            f"ROOT_CACHE={self.root_cache}",
            f"PERF_FRIENDLY={int(self.perf_friendly)}",
            "mount_rwdirs() {",
            *(f"    {m}" for m in mounts),
            "    :",
            "}",
        ]
        return "\n".join([*lines, ""])

    def _root_mode(self) -> str:
        if self.root is None:
            return "host"
        return "rw" if self.root_writable else "overlay"

    def _accept(self, listener: socket.socket, deadline: float) -> socket.socket:
        listener.settimeout(0.2)
        while True:
            try:
                conn, _ = listener.accept()
                conn.settimeout(0.2)
                return conn
            except TimeoutError:
                self._check_running("boot")
                if time.monotonic() > deadline:
                    self._fail_timeout("QEMU did not connect", self.boot_timeout)

    def close(self) -> None:
        """Power the guest off (kill it if it does not go), release the lock."""
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._poweroff()
        finally:
            self._kill()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _poweroff(self) -> None:
        assert self._proc is not None
        if self._conn is not None:
            try:
                self._conn.sendall(b"poweroff\n")
            except OSError:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=20)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands ----------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 600.0,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        on_output: OutputCallback | None = None,
    ) -> GuestResult:
        """Run ``command`` (``sh -c`` text, or an argv) as root in the guest.

        Output is streamed to ``on_output`` as it arrives and returned whole.
        Raises :class:`GuestTimeout` after ``timeout`` seconds and
        :class:`TargetGone` if the guest dies (panic, poweroff); both kill it.
        """
        if not self.alive:
            raise TargetGone("the guest is not running; start a new GuestSession")
        assert self._conn is not None and self._tmp is not None
        run_id = self._next_id
        self._next_id += 1
        script = self._tmp / "ctl" / f"cmd-{run_id}.sh"
        script.write_text(_script(command, env or {}, cwd, base_env(self.root is not None)))
        started = time.monotonic()
        try:
            self._conn.sendall(f"run {run_id}\n".encode())
            marker = f"\x1eKNOCKOUT-EXIT {self._nonce} {run_id} ".encode()
            output, tail = self._read_until(marker, started + timeout, "command", on_output)
        except BaseException:
            self._kill()
            raise
        finally:
            script.unlink(missing_ok=True)
        return GuestResult(
            returncode=int(tail),
            output=output.decode(errors="replace"),
            seconds=time.monotonic() - started,
            boot_seconds=self.boot_seconds,
            console_log=self.console_log,
        )

    def _read_until(
        self,
        marker: bytes,
        deadline: float,
        what: str,
        on_output: OutputCallback | None = None,
    ) -> tuple[bytes, bytes]:
        """Bytes before ``marker``, and the rest of the marker's line.

        Everything before the marker is passed to ``on_output`` as it comes,
        holding back only what could be the start of the marker.
        """
        assert self._conn is not None
        buf, self._pending, emitted = self._pending, b"", 0
        while True:
            idx = buf.find(marker)
            end = buf.find(b"\n", idx + len(marker)) if idx >= 0 else -1
            if end >= 0:
                if on_output is not None and idx > emitted:
                    on_output(buf[emitted:idx])
                self._pending = buf[end + 1 :]
                return buf[:idx], buf[idx + len(marker) : end]
            safe = len(buf) - len(marker) + 1 if idx < 0 else idx
            if on_output is not None and safe > emitted:
                on_output(buf[emitted:safe])
                emitted = safe
            buf += self._recv(deadline, what)

    def _recv(self, deadline: float, what: str) -> bytes:
        assert self._conn is not None
        while True:
            try:
                data = self._conn.recv(65536)
            except TimeoutError:
                self._check_running(what)
                if time.monotonic() > deadline:
                    self._fail_timeout(f"the guest's {what} did not finish", None)
                continue
            if not data:
                self._proc_exit_wait()
                self._fail_gone(what)
            return data

    # -- failures ----------------------------------------------------------

    def _proc_exit_wait(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def _check_running(self, what: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._fail_gone(what)

    def _fail_gone(self, what: str) -> NoReturn:
        code = self._proc.poll() if self._proc is not None else None
        self._kill()
        raise TargetGone(
            f"the guest died during {what} (qemu exit status {code}){self._cause()}; "
            f"full log: {self.console_log}\n{self.console_tail()}"
        )

    def _cause(self) -> str:
        """``: <the console line that says why>``, or nothing if none does."""
        try:
            text = self.console_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""
        for cause in _CAUSES:
            for line in text.splitlines():
                if cause in line:
                    return ": " + line.split("] ", 1)[-1].strip()
        return ""

    def sysrq(self, key: str) -> None:
        """Have the guest's kernel run SysRq ``key`` (``w``: blocked tasks' stacks to the console).

        Works while a command runs: the guest's init serves the port meanwhile.
        """
        if len(key) != 1 or not key.islower():
            raise BadInput(f"a SysRq key is one lower-case letter (w, t, l...); got {key!r}")
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.sendall(f"sysrq {key}\n".encode())

    def _fail_timeout(self, message: str, seconds: float | None) -> NoReturn:
        if self._proc is not None and self._proc.poll() is None:
            self.sysrq("w")  # what the command waits on, into the console log
            self.sysrq("l")  # and every CPU's backtrace
            time.sleep(_DUMP_WAIT)
        self._kill()
        limit = f" in {seconds:.0f} s" if seconds is not None else " in time"
        raise GuestTimeout(
            f"{message}{limit}; the guest was killed; raise the timeout, or see what it "
            f"waited on (its blocked tasks' stacks) in {self.console_log}\n{self.console_tail()}"
        )

    def console_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last lines of the serial console and of QEMU's own messages."""
        parts = []
        for path, title in (
            (self.console_log, "console"),
            (self.console_log.with_suffix(".qemu"), "qemu"),
        ):
            try:
                text = path.read_bytes().decode(errors="replace")
            except OSError:
                continue
            tail = [line.rstrip("\r") for line in text.splitlines()[-lines:]]
            if tail:
                parts.append(f"--- {title} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no console output)"


_ACCEL = re.compile(r"(tcg|kvm)(,[a-z-]+=[A-Za-z0-9_.-]+)*")


def _checked_accel(accel: str) -> str:
    if not _ACCEL.fullmatch(accel):
        raise BadInput(
            f"accel {accel!r} is not a QEMU accelerator this runner knows; "
            "write tcg, tcg,thread=single or kvm"
        )
    return accel


#: where the guest mounts a tmpfs of its own, hiding the host's files below
GUEST_PRIVATE_DIRS = (Path("/tmp"), Path("/var/tmp"), Path("/run"), Path("/dev/shm"))


def knockout_tree() -> Path:
    """The directory holding the ``knockout`` package this process runs."""
    return Path(__file__).resolve().parents[2]


def host_caches() -> list[Path]:
    """Host caches a guest over a prepared root reads: built modules, debug info, sources."""
    from knockout.dwarf import debug_cache
    from knockout.targets.kernel import kmod_cache_root

    return [kmod_cache_root(), debug_cache() / "debug", debug_cache() / "src"]


def shared_host_dirs(rwdirs: Sequence[Path], *, writable_root: bool = False) -> list[Path]:
    """What a guest over a prepared root sees of the host, read-only, at the same paths.

    knockout's tree, the current directory and the :func:`host_caches`
    (a module cross-built on the host is found by the guest's
    :func:`~knockout.targets.kernel.build_module` there), each cache made
    here if missing so one built after the boot is seen too; none inside an
    rwdir or inside another.  A root being prepared (``writable_root``) is
    given nothing but its rwdirs.
    """
    if writable_root:
        return []
    wanted = {knockout_tree(), Path.cwd().resolve()}
    for cache in host_caches():
        cache.mkdir(parents=True, exist_ok=True)
        wanted.add(cache.resolve())
    shared: list[Path] = []
    for d in sorted(wanted, key=lambda p: len(p.parts)):
        if d == Path("/") or any(d.is_relative_to(other) for other in [*rwdirs, *shared]):
            continue
        shared.append(d)
    return sorted(shared)


def hidden_host_dirs(rwdirs: Sequence[Path]) -> list[Path]:
    """Host directories the guest needs that its private tmpfs mounts would hide.

    knockout's own source tree, the Python environment it runs from and the
    current directory: a checkout under ``/tmp`` (a CI's fresh clone, say)
    must still be importable, and the command's directory visible, inside.
    """
    wanted = {
        knockout_tree(),
        Path(sys.prefix).resolve(),
        Path.cwd().resolve(),
    }
    hidden: list[Path] = []
    for d in sorted(wanted):
        if not any(d.is_relative_to(p) for p in GUEST_PRIVATE_DIRS):
            continue
        if any(d.is_relative_to(other) for other in [*rwdirs, *hidden]):
            continue
        hidden.append(d)
    return hidden


def _checked_rwdir(path: Path | str) -> Path:
    resolved = Path(path).resolve()
    if not resolved.is_dir():
        raise NotFound(f"rwdir {path} is not a directory; create it first")
    if resolved == Path("/"):
        raise BadInput("the host's / cannot be an rwdir; share a directory below it")
    return resolved


def run_in_guest(
    command: str | Sequence[str],
    *,
    kernel: Path | str | None = None,
    mem: str = "4G",
    cpus: int = 2,
    rwdir: Path | str | Sequence[Path | str] | None = None,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    perf_friendly: bool = False,
    root_cache: str = "mmap",
    pvh: bool = True,
    kernel_args: Sequence[str] = (),
    accel: str | None = None,
    boot_timeout: float = 120.0,
    on_output: OutputCallback | None = None,
) -> GuestResult:
    """Boot a guest, run one command in it, power it off; see :class:`GuestSession`.

    ``timeout`` is the command's; the boot has ``boot_timeout`` on top (the
    wait for another guest's lock counts in neither).
    """
    if rwdir is None:
        rwdirs: list[Path | str] = []
    elif isinstance(rwdir, (str, Path)):
        rwdirs = [rwdir]
    else:
        rwdirs = list(rwdir)
    session = GuestSession(
        kernel=kernel,
        mem=mem,
        cpus=cpus,
        rwdirs=rwdirs,
        perf_friendly=perf_friendly,
        root_cache=root_cache,
        pvh=pvh,
        kernel_args=kernel_args,
        accel=accel,
        boot_timeout=boot_timeout,
    )
    with session:
        return session.run(command, timeout=timeout, env=env, cwd=cwd, on_output=on_output)
