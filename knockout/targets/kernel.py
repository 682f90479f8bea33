"""The running kernel as a cut target, through knockout's module.

The module (``knockout/kmod/knockout.c``) does every write; this side builds
it for the running kernel (:func:`build_module`, cached by kernel release and
source hash), loads it (:func:`load_module`), and talks to its control file
``/proc/knockout`` (:class:`Control`).  :class:`KernelTarget` implements
:class:`knockout.targets.Target`.

Every cut the module holds has a TTL: unless renewed it reverts itself.  A
:class:`KernelTarget` renews its own cuts from a heartbeat thread while the
Python process lives and reverts them at exit, so a knockout killed with
SIGKILL leaves the kernel as it was within the TTL.

>>> parse_listing("id=3 addr=ffffffff81000000 len=5 ttl_ms=900 state=active "
...               "mech=text_poke_bp+stub old=0f1f440000 new=e900000000 sym=f+0x0/0x10")[0].ttl
0.9
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from knockout.arch import Arch, CodeStyle, host_arch
from knockout.cuts import Cut, describe_intent
from knockout.elf import read_kcore
from knockout.errors import BadInput, KnockoutError, NotFound, Refused, UnsafeCut
from knockout.journal import KernelEntry, KernelJournal, self_identity
from knockout.symbols import SymbolTable, kallsyms
from knockout.targets import Abilities, AppliedCut, Outcome

__all__ = [
    "CONTROL_PATH",
    "Control",
    "KernelCut",
    "KernelCutState",
    "KernelTarget",
    "build_module",
    "kernel_cuts",
    "kernel_release",
    "load_module",
    "lockdown",
    "module_loaded",
    "module_source_hash",
    "parse_listing",
    "revert_unheld",
    "unload_module",
]

#: the module's control file
CONTROL_PATH = "/proc/knockout"
#: where built modules are kept by default: ``<root>/<release>-<arch>-<hash>/knockout.ko``
#: (``$KNOCKOUT_KMOD_CACHE`` overrides it, see :func:`kmod_cache_root`)
CACHE_ROOT = Path("/var/cache/knockout/kmod")
#: the module's sources, shipped inside the package
SOURCE_DIR = Path(__file__).resolve().parent.parent / "kmod"
_SOURCES = ("knockout.c", "Kbuild")
#: seconds apply() waits for a stub slot to come back from its RCU grace period
_SLOT_WAIT = 5.0
#: the kernel's lockdown state (securityfs): e.g. ``none [integrity] confidentiality``
LOCKDOWN_PATH = "/sys/kernel/security/lockdown"


def kmod_cache_root() -> Path:
    """Where built modules are kept: ``$KNOCKOUT_KMOD_CACHE``, else :data:`CACHE_ROOT`."""
    return Path(os.environ.get("KNOCKOUT_KMOD_CACHE") or CACHE_ROOT)


def kernel_release() -> str:
    """``uname -r`` of the running kernel."""
    return platform.release()


def module_source_hash() -> str:
    """A short hash of the module's sources: a changed source is a new build."""
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _kdir(release: str) -> Path:
    return Path(f"/lib/modules/{release}/build")


def build_module(
    release: str | None = None,
    *,
    kdir: Path | str | None = None,
    arch: Arch | None = None,
    cache_root: Path | None = None,
) -> Path:
    """The path of ``knockout.ko`` for ``release`` (default: running), built if not cached.

    ``kdir`` is the kernel build tree (default ``/lib/modules/RELEASE/build``);
    ``arch`` other than the host's cross-compiles (``aarch64`` with
    ``aarch64-linux-gnu-gcc``).  Raises :class:`NotFound` without headers and
    :class:`KnockoutError` with the compiler's last lines when the build fails.
    """
    release = release or kernel_release()
    a = arch or host_arch()
    root = cache_root or kmod_cache_root()
    out = root / f"{release}-{a.name}-{module_source_hash()}"
    ko = out / "knockout.ko"
    if ko.exists():
        return ko
    tree = Path(kdir) if kdir is not None else _kdir(release)
    if not (tree / "Makefile").exists():
        raise NotFound(
            f"no kernel build tree at {tree}; install the headers (apt-get install "
            f"linux-headers-{release}) or pass kdir="
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    except OSError as exc:
        raise Refused(
            f"cannot build the module into {root} ({exc.strerror}); build it on the host first "
            "(python -c 'from knockout.targets.kernel import build_module; build_module()') "
            "or set KNOCKOUT_KMOD_CACHE to a writable directory"
        ) from None
    try:
        for name in _SOURCES:
            shutil.copy2(SOURCE_DIR / name, work / name)
        cmd = ["make", "-C", str(tree), f"M={work}", "modules"]
        if a is not host_arch():
            cmd[1:1] = [f"ARCH={a.kbuild_arch}", f"CROSS_COMPILE={a.cross_compile}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (work / "knockout.ko").exists():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
            raise KnockoutError(f"building knockout.ko for {release} failed: {tail}")
        try:
            work.rename(out)
        except OSError:
            if not ko.exists():  # another builder won the race: theirs is as good
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return ko


def module_loaded() -> bool:
    """Whether the module's control file exists."""
    return os.path.exists(CONTROL_PATH)


def lockdown(path: str = LOCKDOWN_PATH) -> str | None:
    """The kernel's lockdown level (``none``, ``integrity``, ``confidentiality``).

    None when it cannot be read (no securityfs mounted, no lockdown LSM).
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def _lockdown_refusal(level: str) -> Refused:
    return Refused(
        f"the kernel is locked down ({level}): it loads no unsigned module and lets nothing "
        "write its text, so knockout cannot cut it; boot with lockdown=none (and Secure Boot "
        "off), or rehearse the cut in a guest with 'knockout vm'"
    )


def load_module(ko: Path | str | None = None) -> None:
    """insmod ``ko`` (default: :func:`build_module`) unless the module is already loaded.

    Refuses (:class:`Refused`, one line) when the kernel is locked down,
    before trying: lockdown forbids both the unsigned module and writes to
    kernel text.
    """
    if module_loaded():
        return
    level = lockdown()
    if level not in (None, "none"):
        raise _lockdown_refusal(level)
    path = Path(ko) if ko is not None else build_module()
    proc = subprocess.run(["insmod", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and not module_loaded():
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["unknown error"]
        raise Refused(
            f"insmod {path} failed: {why[0]}; run as root on a kernel that loads modules "
            "(dmesg says why: lockdown, no kprobes, unknown symbol)"
        )


def unload_module() -> None:
    """Revert every cut, then rmmod the module; refused while a cut is stuck.

    Each live cut holds a reference on the module, so a plain ``rmmod``
    fails while any is in place: ``revert all`` goes first.
    """
    if not module_loaded():
        return
    with contextlib.suppress(KnockoutError, OSError), Control() as control:
        control.raw("revert all")
    proc = subprocess.run(["rmmod", "knockout"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Refused(
            f"rmmod knockout failed: {proc.stderr.strip()}; a cut whose bytes changed under it "
            "keeps the module loaded (see dmesg and 'knockout list --kernel')"
        )


_ERRNO_CLASS: dict[int, type[KnockoutError]] = {
    errno.EINVAL: BadInput,
    errno.EPERM: Refused,
    errno.EACCES: Refused,
    errno.EOPNOTSUPP: Refused,
    errno.EINTR: Refused,
    errno.ENOENT: NotFound,
    errno.EFAULT: BadInput,
}


def _error(err: int, answer: str) -> KnockoutError:
    """The module's refusal (errno and its one-line reason) as a knockout error."""
    message = answer.removeprefix("error: ") or os.strerror(err)
    return _ERRNO_CLASS.get(err, UnsafeCut)(f"kernel module: {message}")


class Control:
    """One open descriptor on ``/proc/knockout``: a command in, its answer out."""

    def __init__(self, path: str = CONTROL_PATH) -> None:
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist; load the module (knockout.ko) first") from None
        except PermissionError:
            raise Refused(f"cannot open {path}: it needs root (CAP_SYS_ADMIN)") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, command: str | bytes) -> tuple[int, str]:
        """Send one command; ``(errno or 0, answer line)``.  Never raises for a refusal."""
        data = command.encode() if isinstance(command, str) else command
        with self._lock:
            try:
                os.write(self._fd, data)
                err = 0
            except OSError as exc:
                err = exc.errno or errno.EIO
            answer = os.pread(self._fd, 1 << 16, 0).decode("ascii", "replace")
        return err, answer.strip()

    def command(self, command: str) -> str:
        """Send one command; its answer, or the module's refusal as a knockout error."""
        err, answer = self.raw(command)
        if err:
            raise _error(err, answer)
        return answer

    def listing(self) -> list[KernelCut]:
        """The cuts the module holds now."""
        return parse_listing(self.command("list"))


@dataclass(frozen=True)
class KernelCut:
    """One cut as the module lists it."""

    id: int
    address: int
    size: int
    ttl: float  #: seconds left before the module reverts it; -1 when stuck
    state: str  #: "active" or "stuck"
    mechanism: str
    old: bytes
    new: bytes
    location: str
    #: how the site is written: "bp" (one instruction covers the jmp), "optprobe" (INT3,
    #: wait out stopped tasks, then the jmp), "kprobe", "patch" (arm64); "" from an older module
    protocol: str = ""
    #: where the write is now: "int3" (entrants diverted to the stub), "jmp", "kprobe", "word"
    phase: str = ""
    stub: int = 0  #: the stub's address (x86_64 text cuts), 0 when none
    unwind: str = ""  #: "no-orc": the stub has no ORC entry (unwinds stop there)
    #: the jmp went in after the INT3 wait-out (protocol "optprobe"); False before, or for "bp"
    waited: bool = False


def parse_listing(text: str) -> list[KernelCut]:
    """Parse the module's list of cuts (one ``key=value`` line per cut).

    >>> cut = parse_listing("id=7 addr=ffffffff810be3a5 len=6 ttl_ms=-1 state=stuck "
    ...     "mech=text_poke_bp+stub protocol=optprobe phase=int3 waited=0 stub=ffffffffc0001000 "
    ...     "unwind=no-orc refs=1 old=53e805590700 new=b82a000000c3 sym=f+0x5/0x37")[0]
    >>> cut.ttl, cut.protocol, cut.phase, cut.waited, hex(cut.stub), cut.unwind
    (-1.0, 'optprobe', 'int3', False, '0xffffffffc0001000', 'no-orc')
    """
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        try:
            out.append(
                KernelCut(
                    id=int(fields["id"]),
                    address=int(fields["addr"], 16),
                    size=int(fields["len"]),
                    ttl=int(fields["ttl_ms"]) / 1000 if int(fields["ttl_ms"]) >= 0 else -1.0,
                    state=fields["state"],
                    mechanism=fields["mech"],
                    old=bytes.fromhex(fields["old"]),
                    new=bytes.fromhex(fields["new"]),
                    location=fields.get("sym", ""),
                    protocol=fields.get("protocol", ""),
                    phase=fields.get("phase", ""),
                    stub=int(fields.get("stub", "0"), 16),
                    unwind=fields.get("unwind", ""),
                    waited=fields.get("waited", "0") == "1",
                )
            )
        except (KeyError, ValueError) as exc:
            raise KnockoutError(f"unexpected line from the module: {line!r} ({exc})") from None
    return out


#: live targets, reverted at interpreter exit
_LIVE: weakref.WeakSet[KernelTarget] = weakref.WeakSet()


@functools.cache
def _revert_at_exit() -> None:
    """Register, once, the exit hook that closes every live :class:`KernelTarget`."""

    def close_all() -> None:
        for target in list(_LIVE):
            target.close()

    atexit.register(close_all)


@dataclass(frozen=True)
class _Lost:
    """A cut this target applied that the module no longer holds as applied."""

    applied: AppliedCut
    why: str


class KernelTarget:
    """The running kernel; cuts go through the module and carry a TTL.

    ``ttl`` (seconds) is how long a cut survives this process dying.  While
    the target is open a heartbeat thread renews every held cut each
    ``ttl / 4``; it runs from the first apply until :meth:`close`, so a cut
    applied at any moment is renewed in time.  ``renew=False`` leaves every
    cut to its TTL (the module reverts it then): :meth:`in_place` reports
    such a cut as lost.  ``load=True`` builds and loads the module when it is
    not loaded.
    """

    abilities = Abilities(
        detach=False, dead_man="the module reverts a cut when its TTL lapses", kernel_text=True
    )
    pid: int | None = None

    def __init__(
        self,
        *,
        ttl: float = 5.0,
        load: bool = True,
        renew: bool = True,
        kcore: str = "/proc/kcore",
        journal: KernelJournal | None = None,
    ) -> None:
        if not 0.2 <= ttl <= 86400:
            raise BadInput(f"--ttl takes 0.2 to 86400 seconds; got {ttl:g}")
        self.arch: Arch = host_arch()
        self.ttl = ttl
        self.renews = renew
        self._kcore = kcore if os.access(kcore, os.R_OK) else None
        if load:
            load_module()
        self.control = Control()
        self.journal = journal or KernelJournal()
        self._held: dict[int, AppliedCut] = {}
        self._lost: dict[int, _Lost] = {}
        self._lock = threading.Lock()
        self._symbols: SymbolTable | None = None
        self._style: CodeStyle | None = None
        self._closed = threading.Event()
        self._beat: threading.Thread | None = None
        _LIVE.add(self)
        _revert_at_exit()

    @property
    def description(self) -> str:
        return f"kernel {kernel_release()}"

    def alive(self) -> bool:
        """The kernel runs as long as we do."""
        return True

    # --- reading -------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        """Kernel memory through ``/proc/kcore`` if readable, else text through the module."""
        if self._kcore is not None:
            return read_kcore(address, size, self._kcore)
        return self.read_text(address, size)

    def read_text(self, address: int, size: int) -> bytes:
        """Kernel or module text through the module's ``read`` (what the module sees)."""
        out = bytearray()
        while len(out) < size:
            n = min(4096, size - len(out))
            out += bytes.fromhex(self.control.command(f"read {address + len(out):x} {n}"))
        return bytes(out)

    def symbols(self) -> SymbolTable:
        if self._symbols is None:
            self._symbols = kallsyms()
        return self._symbols

    def code_style(self) -> CodeStyle:
        """How the module writes cuts on this kernel's ISA (see the arch entry)."""
        if self._style is None:
            self._style = self.arch.kernel_code_style(
                _kallsyms_address, self._read_pointer, self.read_text
            )
        return self._style

    def _read_pointer(self, address: int) -> int | None:
        """A kernel pointer's value through ``/proc/kcore`` (None without it)."""
        if self._kcore is None:
            return None
        try:
            return int.from_bytes(read_kcore(address, 8, self._kcore), "little")
        except (KnockoutError, OSError):
            return None

    # --- cutting -------------------------------------------------------------

    def apply(self, cut: Cut) -> AppliedCut:
        """Verify ``cut.old`` is there, write ``cut.new``, read back; all or nothing."""
        if cut.arch is not self.arch:
            raise BadInput(f"the cut is for {cut.arch} but the kernel is {self.arch}; replan it")
        ttl_ms = max(1, round(self.ttl * 1000))
        command = f"cut {cut.address:x} {cut.old.hex()} {cut.new.hex()} {ttl_ms}"
        deadline = time.monotonic() + _SLOT_WAIT
        while True:
            err, answer = self.control.raw(command)
            # EAGAIN: every stub slot is cooling down (waiting for RCU); soon free
            if err != errno.EAGAIN or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if err:
            raise _error(err, answer)
        cut_id = int(answer.removeprefix("id="))
        applied = AppliedCut(
            cut=cut,
            handle=cut_id,
            mechanism=self.arch.kernel_mechanism,
            extra={"id": cut_id, "ttl": self.ttl},
        )
        with self._lock:
            self._held[cut_id] = applied
        holder_pid, holder_start = self_identity()
        self.journal.add(
            KernelEntry(
                cut_id,
                cut.address,
                cut.location,
                describe_intent(cut.intent),
                holder_pid,
                holder_start,
            )
        )
        if self.renews:
            self._start_heartbeat()
        return applied

    def revert(self, applied: AppliedCut) -> None:
        """Put the original bytes back (or confirm the TTL already did)."""
        cut_id = int(applied.handle)
        with self._lock:
            self._held.pop(cut_id, None)
            self._lost.pop(cut_id, None)
        self.journal.remove(cut_id)
        err, answer = self.control.raw(f"revert {cut_id}")
        if err == errno.ENOENT and self.read_text(applied.cut.address, applied.cut.size) == (
            applied.cut.old
        ):
            return  # the module's TTL reverted it already
        if err:
            raise UnsafeCut(
                f"kernel module could not revert cut {cut_id} at {applied.cut.location}: "
                f"{answer.removeprefix('error: ')}"
            )

    def in_place(self, applied: AppliedCut) -> str | None:
        """None if the module still holds ``applied`` active; else why not.

        Asks the module (its own record: present, active, not stuck, the
        bytes this target gave it), and reports a cut whose renewal failed.
        """
        cut_id = int(applied.handle)
        with self._lock:
            lost = self._lost.get(cut_id)
        if lost is not None:
            return lost.why
        where = f"kernel cut {cut_id} at {applied.cut.location}"
        listed = {c.id: c for c in self.control.listing()}.get(cut_id)
        if listed is None:
            return (
                f"{where} is gone: the module reverted it (its {self.ttl:g} s TTL lapsed "
                "without a renewal, or someone ran 'knockout revert')"
            )
        if listed.state != "active":
            return f"{where} is {listed.state}: its bytes changed under it (see dmesg)"
        if (listed.old, listed.new) != (applied.cut.old, applied.cut.new):
            return f"{where} holds other bytes than this cut wrote; replan and rerun"
        return None

    def leave(self, applied: AppliedCut) -> AppliedCut:
        """Kernel cuts cannot outlive knockout beyond their TTL: refused before any write."""
        raise BadInput(
            "--detach is not possible for kernel cuts (the module reverts a cut when its TTL "
            "lapses); hold the cut with --for SECONDS instead"
        )

    def renew(self) -> None:
        """Renew the TTL of every cut this target holds (the heartbeat calls this)."""
        ttl_ms = max(1, round(self.ttl * 1000))
        with self._lock:
            held = list(self._held.items())
        for cut_id, applied in held:
            err, answer = self.control.raw(f"renew {cut_id} {ttl_ms}")
            if err:
                why = answer.removeprefix("error: ") or os.strerror(err)
                with self._lock:
                    if self._held.pop(cut_id, None) is not None:
                        self._lost[cut_id] = _Lost(
                            applied,
                            f"kernel cut {cut_id} at {applied.cut.location} could not be "
                            f"renewed ({why}): the module reverted it or will within its TTL",
                        )

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beat is not None or self._closed.is_set():
                return
            self._beat = threading.Thread(
                target=self._heartbeat, name="knockout-heartbeat", daemon=True
            )
        self._beat.start()

    def _heartbeat(self) -> None:
        """Renew every ``ttl / 4`` until :meth:`close`; never exits while the target is open."""
        period = max(0.05, self.ttl / 4)
        while not self._closed.wait(period):
            try:
                self.renew()
            except OSError as exc:  # the control file is gone (module unloaded?)
                with self._lock:
                    for cut_id, applied in self._held.items():
                        self._lost[cut_id] = _Lost(
                            applied,
                            f"kernel cut {cut_id} at {applied.cut.location}: renewals failed "
                            f"({exc.strerror}); the module may have been unloaded",
                        )
                    self._held.clear()

    def forget(self, cut_id: int) -> None:
        """Stop renewing and reverting cut ``cut_id``: its TTL (or someone else) ends it."""
        with self._lock:
            self._held.pop(cut_id, None)
            self._lost.pop(cut_id, None)

    def held(self) -> list[AppliedCut]:
        """The cuts this target applied and has not reverted."""
        with self._lock:
            return list(self._held.values())

    def list_cuts(self) -> list[KernelCut]:
        """Every cut the module holds, whoever applied it."""
        return self.control.listing()

    def close(self) -> None:
        """Revert this target's cuts, stop the heartbeat, close the control file."""
        self._closed.set()
        for applied in self.held():
            with contextlib.suppress(KnockoutError, OSError):
                self.revert(applied)
        self.control.close()
        _LIVE.discard(self)

    def __enter__(self) -> KernelTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kallsyms_address(name: str, path: str = "/proc/kallsyms") -> int | None:
    """The address of the kernel symbol ``name`` of any type (data too), or None."""
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == name:
                return int(fields[0], 16)
    return None


@dataclass(frozen=True)
class KernelCutState:
    """A cut the module holds, and the knockout that holds it (if the journal knows)."""

    cut: KernelCut
    holder: KernelEntry | None

    @property
    def held(self) -> bool:
        """A live knockout holds the cut (and renews it, and will revert it)."""
        return self.holder is not None and self.holder.holder_alive()


def kernel_cuts(journal: KernelJournal | None = None) -> list[KernelCutState]:
    """Every cut knockout's module holds, with its holder; none when it is not loaded."""
    if not module_loaded():
        return []
    journal = journal or KernelJournal()
    with Control() as control:
        listing = control.listing()
    return [KernelCutState(c, journal.holder(c.id, c.address)) for c in listing]


def revert_unheld(journal: KernelJournal | None = None) -> list[Outcome]:
    """Revert every kernel cut no live knockout holds (a held one reverts when its knockout ends).

    The same rule as :func:`knockout.targets.process.revert_journaled`.
    """
    journal = journal or KernelJournal()
    states = kernel_cuts(journal)
    if not states:
        return []
    out = []
    with Control() as control:
        for state in states:
            c = state.cut
            where = c.location.split("/")[0] or f"{c.address:#x}"
            if state.held:
                assert state.holder is not None
                out.append(
                    Outcome(
                        "held",
                        f"kernel cut {c.id} at {where} is held by knockout pid "
                        f"{state.holder.holder_pid}; stop that knockout (Ctrl-C) and it "
                        "reverts the cut",
                    )
                )
                continue
            err, answer = control.raw(f"revert {c.id}")
            journal.remove(c.id)
            if err and err != errno.ENOENT:
                why = answer.removeprefix("error: ") or os.strerror(err)
                out.append(Outcome("failed", f"kernel cut {c.id} at {where}: {why}; see dmesg"))
            else:
                out.append(Outcome("reverted", f"kernel: restored {c.old.hex(' ')} at {where}"))
    return out
