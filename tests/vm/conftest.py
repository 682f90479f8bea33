"""The vm tier: tests that run commands as root in a QEMU guest.

Every test here is marked ``vm``.  The session-scoped fixture ``guest`` is one
guest kept up for the whole pytest session (one boot for the tier), booted on
first use and booted again only after a test killed it (panic, timeout) or
called :meth:`Guest.reboot`.  It holds /tmp/knockout-guest.lock while it runs,
so other guests on the machine wait.

Missing QEMU or kernel is a failure, not a skip: ``make test`` installs them.

Usage::

    def test_uname(guest: Guest) -> None:
        assert guest.run("uname -r").output.strip() == guest.release

    def test_module(guest: Guest) -> None:
        guest.run(f"insmod {ko_path}")          # fails the test on non-zero status
        ...
        guest.assert_dmesg_clean()              # no oops/WARNING/BUG since last check
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from knockout.measure.guards import kernel_problems
from knockout.vm import GuestResult, GuestSession

#: (boots, boot seconds) of every Guest this session, for the terminal summary
_BOOTS: list[float] = []


class Guest:
    """The vm tier's guest: booted lazily, rebooted after it dies.

    ``rwdir`` is a host directory shared read-write at the same path; the
    host's ``/`` (this repo included) is visible read-only.  The read-only root
    is cached by the guest: a file rebuilt on the host while the guest runs
    may look stale inside, so write build products to a new path (or to
    ``rwdir``, which is not cached).
    """

    def __init__(
        self,
        rwdir: Path,
        *,
        arch: str | None = None,
        kernel: Path | str | None = None,
        kernel_args: Sequence[str] = (),
        accel: str | None = None,
    ) -> None:
        self.rwdir = rwdir
        #: the guest's architecture (None: the host's)
        self.arch = arch
        #: the kernel to boot: an image path or a release prefix such as ``6.12``
        #: (None: :func:`knockout.vm.default_kernel`)
        self.kernel = kernel
        #: extra kernel command-line arguments, e.g. ``["preempt=full"]``
        self.kernel_args = list(kernel_args)
        #: QEMU's ``-accel`` (None: the session's default)
        self.accel = accel
        self.boots = 0
        self.boot_seconds: list[float] = []
        self._session: GuestSession | None = None
        self._dmesg_seen = 0

    @property
    def session(self) -> GuestSession:
        """The running session, booted now if there is none alive."""
        if self._session is None or not self._session.alive:
            self.close()
            session = GuestSession(
                arch=self.arch,
                kernel=self.kernel,
                rwdirs=[self.rwdir],
                kernel_args=self.kernel_args,
                accel=self.accel,
            )
            session.start()
            self._session = session
            self.boots += 1
            self.boot_seconds.append(session.boot_seconds)
            _BOOTS.append(session.boot_seconds)
            self._dmesg_seen = 0
        return self._session

    @property
    def release(self) -> str:
        """``uname -r`` of the guest's kernel."""
        return self.session.release

    @property
    def console_log(self) -> Path:
        """The serial console log of the current boot."""
        return self.session.console_log

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 300.0,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        check: bool = True,
    ) -> GuestResult:
        """Run ``command`` as root; with ``check``, a non-zero status fails the test."""
        result = self.session.run(command, timeout=timeout, env=env, cwd=cwd)
        if check and result.returncode != 0:
            pytest.fail(
                f"guest command exited {result.returncode}: {command!r}\n{result.output}",
                pytrace=False,
            )
        return result

    def dmesg(self) -> list[str]:
        """The guest's kernel log, one string per line."""
        return self.run("dmesg", timeout=60).output.splitlines()

    def dmesg_problems(self) -> list[str]:
        """Oops/WARNING/BUG... lines logged since the last call (or boot).

        An OOM report's stack dump is not a problem (``guards.kernel_problems``).
        """
        lines = self.dmesg()
        start = self._dmesg_seen if self._dmesg_seen <= len(lines) else 0
        self._dmesg_seen = len(lines)
        return kernel_problems(lines[start:])

    def assert_dmesg_clean(self) -> None:
        """Fail the test if the kernel logged a problem since the last check."""
        problems = self.dmesg_problems()
        assert not problems, "kernel problems in dmesg:\n" + "\n".join(problems)

    def reboot(self) -> None:
        """Power the guest off; the next command boots a fresh one."""
        self.close()

    def close(self) -> None:
        """Power off now (the lock is released)."""
        if self._session is not None:
            self._session.close()
            self._session = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/vm with ``vm``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vm)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many times the ``guest`` fixture booted, and how fast."""
    if _BOOTS:
        seconds = ", ".join(f"{s:.1f}" for s in _BOOTS)
        terminalreporter.write_line(
            f"vm tier: the guest fixture booted {len(_BOOTS)} time(s), to the first "
            f"command in {seconds} s"
        )


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """One guest for the whole session; see :class:`Guest`."""
    g = Guest(tmp_path_factory.mktemp("guest-rw"))
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def arm64_guest(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """An arm64 guest (``knockout vm --arch arm64``) for one test module; see :class:`Guest`.

    Debian's arm64 kernel and userspace under qemu-system-aarch64 (TCG), the
    root ``make setup`` prepared (mk/arm64.mk), ``knockout`` on PATH running
    this tree.  One guest at a time: the shared x86 guest is powered off
    first (it boots again when a later test uses it), and this one is powered
    off when the module ends.
    """
    guest.close()
    g = Guest(tmp_path_factory.mktemp("arm64-rw"), arch="arm64")
    try:
        yield g
    finally:
        g.close()
