"""The guest's initramfs: busybox, the virtio/9p modules and an init script.

The image is a plain (uncompressed) ``newc`` cpio archive written by Python,
so building it needs neither root nor the ``cpio`` tool.  It is cached under
:func:`cache_dir`, keyed by the kernel release and a hash of everything that
goes into it (this file's init script, busybox, the module files).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from knockout.errors import NotFound

__all__ = [
    "GUEST_MODULES",
    "INIT_SCRIPT",
    "OVERLAY_MODULES",
    "build_initramfs",
    "cache_dir",
    "cpio_newc",
    "module_files",
]

#: modules the guest needs before it can mount the host's ``/``; their
#: dependencies are added by ``modprobe --show-depends``
GUEST_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "virtio_console")
#: and before it can mount a prepared root under its tmpfs overlay
OVERLAY_MODULES = ("overlay",)

#: 9p mount options: ``msize`` is the largest the virtio transport takes in 6.1
NINEP_OPTS = "trans=virtio,version=9p2000.L,msize=512000"

#: PID 1 of the guest. It mounts the host's ``/`` read-only, the control directory (tag
#: ``koctl``) and the rwdirs, then serves commands read from the virtio port named ``knockout``:
#: ``run ID`` runs ``/run/knockout/cmd-ID.sh`` chrooted into the host's ``/`` with output to the
#: port, then prints the exit marker (in the background: the port is still served meanwhile, one
#: command at a time); ``sysrq KEY`` writes KEY to ``/proc/sysrq-trigger`` (a hung command's
#: tasks dumped to the console: ``w`` blocked, ``t`` all); ``poweroff`` ends the guest.
#: ``config.sh`` in the control directory (written by the host) sets NONCE, ROOT_MODE,
#: ROOT_CACHE, PERF_FRIENDLY and defines ``mount_rwdirs``, which calls ``mount_rw TAG PATH`` for
#: each rwdir (and ``mount_bind FROM TO`` for a second view of one). ROOT_MODE is ``host`` (the
#: host's ``/`` and ``/usr``, read-only), ``overlay`` (a prepared root, read-only, under a tmpfs
#: overlay: writable in the guest, changes lost at poweroff) or ``rw`` (a prepared root,
#: read-write: only to prepare it).
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot
die() { echo "knockout-init: $*" >/dev/console; sync; poweroff -f; sleep 60; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod "/modules/$m" || die "insmod $m failed"
done
mount -t 9p -o NINEP_OPTS,cache=none koctl /ctl || die "cannot mount the control dir"
. /ctl/config.sh
case "$ROOT_MODE" in
host)
    mount -t 9p -o NINEP_OPTS,cache=$ROOT_CACHE,ro koroot $R || die "cannot mount the host's /"
    mount -t 9p -o NINEP_OPTS,cache=loose,ro kousr $R/usr || die "cannot mount the host's /usr"
    ;;
overlay)
    mkdir -p /lower /upper
    mount -t 9p -o NINEP_OPTS,cache=$ROOT_CACHE,ro koroot /lower || die "cannot mount the root"
    mount -t tmpfs -o mode=0755 tmpfs /upper
    mkdir -p /upper/data /upper/work
    mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay $R \
        || die "cannot mount the overlay root"
    ;;
rw)
    mount -t 9p -o NINEP_OPTS,cache=none koroot $R || die "cannot mount the root read-write"
    ;;
*)
    die "unknown ROOT_MODE $ROOT_MODE"
    ;;
esac
mount -t tmpfs -o mode=0755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/run/knockout
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t securityfs securityfs $R/sys/kernel/security 2>/dev/null
mount --move /ctl $R/run/knockout
mount_rw() {
    [ -d "$R$2" ] || mkdir -p "$R$2"
    mount -t 9p -o NINEP_OPTS,cache=none "$1" "$R$2" || die "cannot mount rwdir $2"
}
mount_bind() {
    mkdir -p "$R$2" && mount --bind "$R$1" "$R$2" || die "cannot bind $1 at $2"
}
mount_rwdirs
if [ "$PERF_FRIENDLY" = 1 ]; then
    mount -t tmpfs -o mode=0755,ro tmpfs "$R/lib/modules/$(uname -r)/kernel"
fi
hostname knockout-guest
port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = knockout ] && port=/dev/${p##*/}
done
[ -n "$port" ] || die "no virtio port named knockout"
exec 3<>"$port"
echo "KNOCKOUT-READY $NONCE" >&3
while read -r verb arg <&3; do
    case "$verb" in
    run)
        (
            chroot $R /bin/sh "/run/knockout/cmd-$arg.sh" </dev/null >&3 2>&3
            printf '\036KNOCKOUT-EXIT %s %s %d\n' "$NONCE" "$arg" $? >&3
        ) &
        ;;
    sysrq)
        case "$arg" in [a-z]) echo "$arg" >/proc/sysrq-trigger ;; esac
        ;;
    poweroff)
        break
        ;;
    esac
done
sync
poweroff -f
""".replace("NINEP_OPTS", NINEP_OPTS)

#: bump when the image layout changes in a way the hash would not see
_FORMAT = "2"


def cache_dir() -> Path:
    """``$KNOCKOUT_CACHE_DIR``, else ``$XDG_CACHE_HOME/knockout``, else ``~/.cache/knockout``."""
    explicit = os.environ.get("KNOCKOUT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "knockout"


def _show_depends(release: str, module: str, root: Path = Path("/")) -> list[Path]:
    """The ``.ko`` files ``modprobe`` would insert for ``module``, dependencies first.

    ``root`` is where ``lib/modules/<release>`` is (``modprobe -d``); the
    paths returned are on the host, below it.
    """
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    try:
        out = subprocess.run(
            [modprobe, "-d", str(root), "-S", release, "--show-depends", module],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except FileNotFoundError:
        raise NotFound("modprobe not found; install kmod (make setup)") from None
    except subprocess.CalledProcessError as exc:
        raise NotFound(
            f"module {module} not found for kernel {release}: {exc.stderr.strip()}; "
            f"install linux-image-{release} (make setup)"
        ) from None
    paths = [line.split()[1] for line in out.splitlines() if line.startswith("insmod ")]
    return [root / p.removeprefix(str(root)).lstrip("/") for p in paths]


def module_files(
    release: str, modules: Iterable[str] = GUEST_MODULES, root: Path = Path("/")
) -> list[Path]:
    """Every ``.ko`` file ``modules`` need, in a valid load order, without repeats."""
    seen: dict[Path, None] = {}
    for module in modules:
        for path in _show_depends(release, module, root):
            seen.setdefault(path, None)
    return list(seen)


def _ko_bytes(path: Path) -> bytes:
    """The module's ELF bytes; ``.ko.xz`` and ``.ko.zst`` are decompressed (busybox can't)."""
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise NotFound(f"{path} is zstd-compressed; install zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


def _ko_name(path: Path) -> str:
    name = path.name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name


@dataclass(frozen=True)
class _Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(ino: int, entry: _Entry) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    return head + b"\0" * (-len(head) % 4)


def cpio_newc(entries: Iterable[_Entry]) -> bytes:
    """A ``newc`` cpio archive (what the kernel unpacks as an initramfs)."""
    parts: list[bytes] = []
    for ino, entry in enumerate([*entries, _Entry("TRAILER!!!", 0)], start=1):
        parts.append(_header(ino, entry))
        parts.append(entry.data + b"\0" * (-len(entry.data) % 4))
    return b"".join(parts)


def _entries(busybox: Path, kos: list[Path]) -> Iterator[_Entry]:
    directory, regular, chardev = 0o040755, 0o100644, 0o020600
    for d in ("bin", "dev", "proc", "sys", "ctl", "newroot", "modules", "lower", "upper"):
        yield _Entry(d, directory)
    yield _Entry("dev/console", chardev, rdev=(5, 1))
    yield _Entry("bin/busybox", regular | 0o111, busybox.read_bytes())
    yield _Entry("init", regular | 0o111, INIT_SCRIPT.encode())
    order = "".join(_ko_name(p) + "\n" for p in kos)
    yield _Entry("modules/order", regular, order.encode())
    for path in kos:
        yield _Entry(f"modules/{_ko_name(path)}", regular, _ko_bytes(path))


def _busybox(root: Path) -> Path:
    """A static busybox of the guest's architecture: the host's, or the prepared root's."""
    host = root == Path("/")
    candidates = [shutil.which("busybox")] if host else []
    candidates += [str(root / "bin/busybox"), str(root / "usr/bin/busybox")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    where = "" if host else f" in {root}"
    raise NotFound(f"busybox not found{where}; install busybox-static (make setup)")


def _key(release: str, busybox: Path, kos: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{_FORMAT}\0{release}\0{INIT_SCRIPT}\0".encode())
    for path in [busybox, *kos]:
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def build_initramfs(
    release: str, directory: Path | None = None, *, root: Path = Path("/")
) -> Path:
    """The cached initramfs for kernel ``release``, built first if missing.

    ``root`` is the guest's root: the host's ``/``, or a root prepared for
    another architecture (its busybox and its kernel's modules are used,
    with overlayfs).
    """
    busybox = _busybox(root)
    modules = GUEST_MODULES if root == Path("/") else (*GUEST_MODULES, *OVERLAY_MODULES)
    kos = module_files(release, modules, root)
    out_dir = directory or cache_dir() / "initramfs"
    out = out_dir / f"{release}-{_key(release, busybox, kos)}.cpio"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(cpio_newc(_entries(busybox, kos)))
    tmp.replace(out)
    return out
