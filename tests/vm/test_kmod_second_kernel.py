"""The kernel-cut scenarios again, on the other installed x86_64 kernel.

``make setup`` installs Debian's 6.1 and 6.12 (mk/kernels.mk).  The shared
guest boots the default kernel (``knockout.vm.default_kernel()``); this file
boots the newest kernel of the other series in a guest of its own, once, and
runs the cut/revert, TTL, hostile-input, hidden-entry and forced-unload
scenarios there.  Only one guest may run at a time, so the shared one is
powered off first (the next test that needs it boots it again).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knockout.targets.kernel import build_module
from knockout.vm import default_kernel, kernel_release
from tests.vm.conftest import Guest
from tests.vm.test_kernel_cut import (
    check_force_unload,
    check_hostile,
    check_intents,
    check_sigkill,
    load,
)
from tests.vm.test_kmod_refusals import check_refusals, installed_kernels


def other_kernel() -> Path:
    """The newest installed x86_64 kernel of the series the default kernel is not."""
    default = kernel_release(default_kernel())
    kernels = installed_kernels()
    assert {"6.1", "6.12"} <= set(kernels), f"{sorted(kernels)}: run make setup (mk/kernels.mk)"
    (other,) = [k for s, k in kernels.items() if s in ("6.1", "6.12") and default not in k.name]
    return other


@pytest.fixture(scope="module")
def second_ko() -> Path:
    return build_module(kernel_release(other_kernel()))


@pytest.fixture(scope="module")
def second(
    guest: Guest, second_ko: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guest]:
    """The other kernel's guest, knockout.ko loaded; the shared guest powered off."""
    guest.reboot()
    g = Guest(tmp_path_factory.mktemp("second-rw"), kernel=other_kernel())
    try:
        yield load(g, second_ko)
    finally:
        g.close()


def test_second_kernel_is_the_other_series(second: Guest) -> None:
    assert second.release != kernel_release(default_kernel())
    assert second.release == kernel_release(other_kernel())


def test_intents_on_the_second_kernel(second: Guest) -> None:
    check_intents(second)


def test_ttl_after_sigkill_on_the_second_kernel(second: Guest) -> None:
    check_sigkill(second)


def test_hostile_input_on_the_second_kernel(second: Guest) -> None:
    check_hostile(second)


def test_hidden_ways_in_refused_on_the_second_kernel(second: Guest) -> None:
    check_refusals(second)


def test_forced_unload_on_the_second_kernel(second: Guest, second_ko: Path) -> None:
    check_force_unload(second, second_ko)
