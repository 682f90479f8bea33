"""Prepare the root of a guest of another architecture (arm64): ``make setup`` runs this.

``python -m knockout.vm.guestroot build --arch arm64`` makes
``/var/cache/knockout/arm64/root`` (see :func:`knockout.vm._platform.prepared_root`)
so that :class:`knockout.vm.GuestSession` can boot ``arch="arm64"`` with no
network in the guest:

1. Debian bookworm's arm64 userspace, ``debootstrap --foreign`` on the host
   (packages: :data:`PACKAGES` -- python3 and its venv module, gcc for the
   process-cut tests' C programs, kmod, linux-perf, a static busybox for the
   initramfs);
2. Debian's arm64 kernel of the same ABI as the host's 6.1 guest kernel
   (``apt-get download linux-image-<release>:arm64``, unpacked into the
   root, its ``modules.dep`` made by the host's ``depmod -b``): the module
   cross-built against Debian's arm64 headers of that release loads in it;
3. the aarch64 wheels of knockout's dependencies, at the versions the host's
   venv has (``pip download --platform manylinux_2_*_aarch64``);
4. debootstrap's second stage, then the venv ``/opt/knockout/venv`` made
   from the wheels, pointed at ``/opt/knockout/tree`` (where every later
   guest binds the booting clone's knockout tree), with ``knockout`` in its
   ``bin/``.  This runs chrooted on the host through qemu-user-static
   (binfmt_misc mounted and Debian's rule registered only for this step, and
   undone after: about 5 min), or, where the host cannot (a container that
   may not mount binfmt_misc), inside an arm64 guest over the root shared
   read-write -- no host support needed, but dpkg over 9p under TCG
   configured about one package a minute when measured (hours).

The root is built in ``root.new`` and renamed into place with its stamp
(:data:`~knockout.vm._platform.ROOT_STAMP`, JSON: what went into it) last.
``build`` does nothing when the stamp equals what would be built now; a new
kernel ABI, another package list or other wheel versions rebuild it.  The
downloads are cached beside it (``debs/``, ``wheels/``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from knockout.errors import KnockoutError, NotFound
from knockout.vm._kernels import DEFAULT_SERIES, default_kernel
from knockout.vm._platform import ROOT_STAMP, GuestPlatform, get_platform, prepared_root_dir
from knockout.vm._qemu import kernel_release

__all__ = [
    "PACKAGES",
    "REQUIREMENTS",
    "RootSpec",
    "build_root",
    "root_spec",
]

#: Debian's suite of the guest's userspace (Debian 12, whose python3 is 3.11)
SUITE = "bookworm"
#: the Debian packages of the guest's userspace, beside debootstrap's minbase
PACKAGES = (
    "python3",
    "python3-venv",
    "gcc",
    "libc6-dev",
    "kmod",
    "linux-perf",
    "procps",
    "busybox-static",
)
#: knockout's dependencies (pyproject.toml) and the test runner's, installed in the guest's
#: venv at the versions the host's venv has
REQUIREMENTS = ("capstone", "pyelftools", "rich", "numpy", "scipy", "pytest", "hypothesis")
#: the guest's Python, for pip's wheel choice
GUEST_PYTHON = "311"
#: bump when the layout of a root changes in a way the spec does not show
FORMAT = 1
#: seconds the provisioning boot may take (debootstrap's second stage under TCG)
PROVISION_TIMEOUT = 3600.0


@dataclass(frozen=True)
class RootSpec:
    """What a prepared root is made of; its stamp is this, as JSON."""

    format: int
    debian_arch: str
    suite: str
    packages: tuple[str, ...]
    #: the guest kernel: ``uname -r`` and the Debian package version
    release: str
    kernel_version: str
    #: ``name==version`` of every wheel asked for (dependencies follow from them)
    requirements: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


def _run(argv: Sequence[str], *, cwd: Path | None = None, what: str) -> str:
    """Run a set-up step; its failure is one line naming the step and its last output."""
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise KnockoutError(f"{what} failed ({shlex.join(argv)}): {tail}")
    return proc.stdout


def _dpkg_version(package: str) -> str:
    out = _run(["dpkg-query", "-W", "-f=${Version}", package], what=f"asking dpkg for {package}")
    return out.strip()


def guest_kernel(platform: GuestPlatform) -> tuple[str, str]:
    """(release, version) of the guest's kernel: the host guest kernel's ABI, for ``platform``.

    The x86_64 guest boots the newest Debian 6.1 (:func:`default_kernel`),
    e.g. ``6.1.0-57-amd64`` of package version ``6.1.192-3``; the arm64 guest
    boots ``6.1.0-57-arm64`` of that version, which mk/kernels.mk's arm64
    headers match.  apt must know that package (``apt-cache``); the ABI
    number is never written anywhere.
    """
    host_release = kernel_release(default_kernel())
    abi, _, host_flavour = host_release.rpartition("-")
    version = _dpkg_version(f"linux-image-{host_release}")
    release = f"{abi}-{platform.debian_arch}"
    package = f"linux-image-{release}:{platform.debian_arch}"
    policy = _run(["apt-cache", "policy", package], what=f"asking apt for {package}")
    if version not in policy:
        raise NotFound(
            f"apt knows no {package} {version} (the {DEFAULT_SERIES} guest kernel "
            f"{host_release}'s version); run apt-get update (dpkg --add-architecture "
            f"{platform.debian_arch} first), or upgrade the host's kernel (apt-get install "
            f"linux-image-{host_flavour})"
        )
    return release, version


def pinned_requirements() -> tuple[str, ...]:
    """``name==version`` for :data:`REQUIREMENTS`, at the versions installed here."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise NotFound(f"{name} is not installed here; run make setup first") from None
    return tuple(pins)


def root_spec(platform: GuestPlatform) -> RootSpec:
    """The spec of the root that would be built for ``platform`` now."""
    release, version = guest_kernel(platform)
    return RootSpec(
        format=FORMAT,
        debian_arch=platform.debian_arch,
        suite=SUITE,
        packages=PACKAGES,
        release=release,
        kernel_version=version,
        requirements=pinned_requirements(),
    )


def _mirror() -> str:
    return os.environ.get("KNOCKOUT_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _unpack(deb: Path, root: Path) -> None:
    """Unpack ``deb`` into ``root`` keeping its merged-/usr symlinks (``bin`` -> ``usr/bin``).

    ``dpkg-deb -x`` would replace the ``lib`` symlink by a directory holding
    only the package's files, and the root would lose its dynamic loader.
    """
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        _run_stdin(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], tar, deb.name)
    finally:
        tar.wait()
    if tar.returncode != 0:
        raise KnockoutError(f"dpkg-deb --fsys-tarfile {deb} failed; delete it and run make setup")


def _run_stdin(argv: Sequence[str], source: subprocess.Popen[bytes], name: str) -> None:
    proc = subprocess.run(argv, stdin=source.stdout, capture_output=True, check=False)
    if proc.returncode != 0:
        raise KnockoutError(f"unpacking {name} failed: {proc.stderr.decode().strip()}")


def _debootstrap(spec: RootSpec, work: Path, debs: Path) -> None:
    debs.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "debootstrap",
            f"--arch={spec.debian_arch}",
            "--foreign",
            "--variant=minbase",
            f"--include={','.join(spec.packages)}",
            f"--cache-dir={debs}",
            spec.suite,
            str(work),
            _mirror(),
        ],
        what="debootstrap's first stage",
    )
    # Inside a container debootstrap makes /proc a symlink to the host's /proc; the
    # guest mounts its own proc there, so it must be a directory.
    proc = work / "proc"
    if proc.is_symlink():
        proc.unlink()
        proc.mkdir()
    # The second stage runs under /bin/sh, which only dash's own configuration would make.
    sh = work / "usr/bin/sh"
    if not sh.exists():
        sh.symlink_to("dash")
    # The initramfs of the provisioning boot needs the guest's busybox before the
    # second stage installs it.
    found = sorted((work / "var/cache/apt/archives").glob("busybox-static_*.deb"))
    if not found:
        raise NotFound(f"debootstrap fetched no busybox-static into {work}; see its log there")
    _unpack(found[-1], work)


def _kernel(spec: RootSpec, work: Path, debs: Path) -> None:
    package = f"linux-image-{spec.release}:{spec.debian_arch}"
    pattern = f"linux-image-{spec.release}_{spec.kernel_version}_{spec.debian_arch}.deb"
    found = list(debs.glob(pattern.replace(":", "%3a")))
    if not found:
        _run(
            ["apt-get", "download", "-q", f"{package}={spec.kernel_version}"],
            cwd=debs,
            what=f"downloading {package}",
        )
        found = list(debs.glob(pattern.replace(":", "%3a")))
    _unpack(found[-1], work)
    system_map = work / "boot" / f"System.map-{spec.release}"
    _run(
        ["depmod", "-b", str(work), "-F", str(system_map), spec.release],
        what=f"depmod for {spec.release}",
    )


def _wheels(spec: RootSpec, into: Path, cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]
    argv = [sys.executable, "-m", "pip", "download", "-q", "-d", str(cache)]
    argv += ["--only-binary=:all:", "--python-version", GUEST_PYTHON, "--implementation", "cp"]
    for tag in [*platforms, "manylinux2014_aarch64", "linux_aarch64"]:
        argv += ["--platform", tag]
    _run([*argv, *spec.requirements], what="downloading the guest's wheels")
    into.mkdir(parents=True, exist_ok=True)
    for wheel in cache.glob("*.whl"):
        shutil.copy2(wheel, into / wheel.name)


#: runs as root inside the provisioning guest, over the root shared read-write
PROVISION_SCRIPT = r"""set -eu
export DEBIAN_FRONTEND=noninteractive
echo "guestroot: debootstrap --second-stage"
# container=lxc: skip the check that mknod works in the target, which 9p refuses (ENXIO);
# /dev is the guest's devtmpfs and no package here makes device nodes
container=lxc /debootstrap/debootstrap --second-stage
echo "guestroot: the venv"
python3 -m venv /opt/knockout/venv
/opt/knockout/venv/bin/pip install -q --no-index --find-links /opt/knockout/wheels REQUIREMENTS
site=$(/opt/knockout/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo /opt/knockout/tree > "$site/knockout-tree.pth"
mkdir -p /opt/knockout/tree
cat > /opt/knockout/venv/bin/knockout <<'EOF'
#!/opt/knockout/venv/bin/python
# knockout from the tree of the clone that booted this guest (bound at /opt/knockout/tree)
import sys

from knockout.cli import main

sys.exit(main())
EOF
chmod 0755 /opt/knockout/venv/bin/knockout
rm -rf /opt/knockout/wheels /var/cache/apt/archives/*.deb
echo "knockout-guest" > /etc/hostname
echo "guestroot: done"
"""


#: where the kernel's binfmt_misc interface is mounted
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def _binfmt_rule(platform: GuestPlatform) -> tuple[str, str] | None:
    """(name, registration line) of Debian's qemu-user-static rule for ``platform``, or None."""
    conf = Path(f"/usr/lib/binfmt.d/qemu-{platform.arch}.conf")
    try:
        line = conf.read_text().strip()
    except OSError:
        return None
    return line.split(":")[1], line


@contextlib.contextmanager
def _foreign_binaries(platform: GuestPlatform) -> Iterator[bool]:
    """Let the host run ``platform``'s binaries through qemu-user-static while inside.

    Mounts binfmt_misc and registers Debian's rule (flag F: the emulator is
    opened now, so it works in a chroot) only if they are not there yet, and
    undoes exactly that on exit.  Yields False when the host cannot (no
    qemu-user-static, or a container that may not mount binfmt_misc).
    """
    rule = _binfmt_rule(platform)
    if rule is None:
        yield False
        return
    name, line = rule
    mounted = registered = False
    try:
        if not (BINFMT_MISC / "register").exists():
            proc = subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MISC)],
                capture_output=True,
                check=False,
            )
            mounted = proc.returncode == 0
            if not mounted:
                yield False
                return
        if not (BINFMT_MISC / name).exists():
            try:
                (BINFMT_MISC / "register").write_text(line)
            except OSError:
                yield False
                return
            registered = True
        yield True
    finally:
        if registered:
            with contextlib.suppress(OSError):
                (BINFMT_MISC / name).write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT_MISC)], capture_output=True, check=False)


def _provision_on_host(script: str, work: Path) -> None:
    """Run the provisioning script chrooted into ``work``, its binaries run by qemu-user."""
    proc_dir = work / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True)
    try:
        proc = subprocess.run(
            ["chroot", str(work), "/bin/sh", "/opt/knockout/provision.sh"],
            stdout=sys.stderr,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"},
            check=False,
        )
    finally:
        _unmount_below(work)
    if proc.returncode != 0:
        raise KnockoutError(
            f"provisioning the root {work} failed (exit {proc.returncode}; its output is above, "
            f"debootstrap's log in {work}/debootstrap/debootstrap.log)"
        )


def _unmount_below(root: Path) -> None:
    """Lazily unmount whatever is still mounted at or below ``root`` (deepest first)."""
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _provision_in_guest(platform: GuestPlatform, work: Path, release: str) -> None:
    """Run the provisioning script in a guest booted over ``work`` shared read-write.

    Needs nothing of the host kernel, but is slow: dpkg over 9p under TCG
    configured about one package a minute when measured.
    """
    from knockout.vm._session import GuestSession

    kernel = work / "boot" / f"vmlinuz-{release}"
    with GuestSession(
        arch=platform.debian_arch, kernel=kernel, root=work, root_writable=True
    ) as guest:
        result = guest.run(
            "sh /opt/knockout/provision.sh", timeout=PROVISION_TIMEOUT, on_output=_progress
        )
    if result.returncode != 0:
        tail = " | ".join(result.output.strip().splitlines()[-4:])
        raise KnockoutError(
            f"provisioning the {platform.debian_arch} root in its guest failed "
            f"(exit {result.returncode}): {tail}; console: {result.console_log}"
        )


def _provision(spec: RootSpec, platform: GuestPlatform, work: Path) -> str:
    """debootstrap's second stage, the venv and ``knockout``; returns where it ran."""
    script = PROVISION_SCRIPT.replace("REQUIREMENTS", shlex.join(spec.requirements))
    (work / "opt/knockout/provision.sh").write_text(script)
    with _foreign_binaries(platform) as on_host:
        if on_host:
            _provision_on_host(script, work)
    if not on_host:
        _progress(b"guestroot: no binfmt_misc here: the second stage runs in an arm64 guest\n")
        _provision_in_guest(platform, work, spec.release)
    (work / "opt/knockout/provision.sh").unlink()
    return "host (qemu-user-static)" if on_host else "guest"


def _progress(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.flush()


def current_spec(root: Path) -> RootSpec | None:
    """The spec in ``root``'s stamp, or None if it has none (not built, or unfinished)."""
    try:
        data = json.loads((root / ROOT_STAMP).read_text())
        data["packages"] = tuple(data["packages"])
        data["requirements"] = tuple(data["requirements"])
        return RootSpec(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def build_root(arch: str = "arm64", *, force: bool = False) -> tuple[Path, bool]:
    """Build the prepared root of ``arch`` unless it is up to date; (root, whether built)."""
    platform = get_platform(arch)
    root = prepared_root_dir(platform)
    spec = root_spec(platform)
    if not force and current_spec(root) == spec:
        return root, False
    base = root.parent
    base.mkdir(parents=True, exist_ok=True)
    work = base / "root.new"
    shutil.rmtree(work, ignore_errors=True)
    steps: dict[str, float] = {}
    for name, step in (
        ("debootstrap", lambda: _debootstrap(spec, work, base / "debs")),
        ("kernel", lambda: _kernel(spec, work, base / "debs")),
        ("wheels", lambda: _wheels(spec, work / "opt/knockout/wheels", base / "wheels")),
        ("provision", lambda: _provision(spec, platform, work)),
    ):
        started = time.monotonic()
        step()
        steps[name] = round(time.monotonic() - started, 1)
        _progress(f"guestroot: {name} took {steps[name]} s\n".encode())
    (work / ROOT_STAMP).write_text(spec.to_json())
    old = base / "root.old"
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        root.rename(old)
    work.rename(root)
    shutil.rmtree(old, ignore_errors=True)
    (base / "build-times.json").write_text(json.dumps(steps, indent=1) + "\n")
    return root, True


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` the root unless up to date; ``check``: exit 1 when it is not."""
    parser = argparse.ArgumentParser(prog="python -m knockout.vm.guestroot")
    parser.add_argument("action", choices=("build", "check"))
    parser.add_argument("--arch", default="arm64")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        if args.action == "check":
            platform = get_platform(args.arch)
            root = prepared_root_dir(platform)
            ok = current_spec(root) == root_spec(platform)
            print(f"{root}: {'up to date' if ok else 'out of date'}")
            return 0 if ok else 1
        root, built = build_root(args.arch, force=args.force)
    except KnockoutError as exc:
        print(f"knockout.vm.guestroot: {exc}", file=sys.stderr)
        return 2
    if built:
        print(f"knockout.vm.guestroot: built {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
