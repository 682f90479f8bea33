"""Which installed kernel a guest boots: ``--kernel`` as a path or a release prefix.

The default is Debian 12's own kernel series, :data:`DEFAULT_SERIES` (6.1),
newest ABI first, even when a newer series (Debian 12 also carries 6.12) is
installed beside it.  The ABI number (``6.1.0-57``) moves with security
updates, so nothing here names one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from knockout.errors import NotFound

__all__ = [
    "DEFAULT_SERIES",
    "default_kernel",
    "find_kernel",
    "installed_kernels",
    "release_key",
    "release_matches",
]

#: the series a guest boots unless told otherwise: Debian 12's kernel (what the README says)
DEFAULT_SERIES = "6.1"


def release_key(release: str) -> list[int | str]:
    """A sort key that orders releases by their numbers: ``-57`` after ``-9``.

    >>> sorted(["6.1.0-57-amd64", "6.1.0-9-amd64", "6.12.117+deb12-amd64"], key=release_key)
    ['6.1.0-9-amd64', '6.1.0-57-amd64', '6.12.117+deb12-amd64']
    """
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def release_matches(release: str, prefix: str) -> bool:
    """True if ``prefix`` is ``release`` or a prefix of it ending at a part boundary.

    ``6.1`` names the 6.1 series, not 6.12:

    >>> release_matches("6.1.0-57-amd64", "6.1"), release_matches("6.12.117+deb12-amd64", "6.1")
    (True, False)
    >>> release_matches("6.12.117+deb12-amd64", "6.12")
    True
    >>> release_matches("6.1.0-57-amd64", "6.1.0-57")
    True
    >>> release_matches("6.1.0-57-amd64", "6.1.0-5")
    False
    """
    if not release.startswith(prefix) or not prefix:
        return False
    rest = release[len(prefix) :]
    return not rest or not rest[0].isalnum() or not prefix[-1].isalnum()


def installed_kernels(
    boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")
) -> list[Path]:
    """Every ``boot/vmlinuz-<release>`` whose modules are installed, oldest release first."""
    found = [
        vmlinuz
        for vmlinuz in boot.glob("vmlinuz-*")
        if (modules / vmlinuz.name.removeprefix("vmlinuz-") / "modules.dep").exists()
    ]
    return sorted(found, key=lambda k: release_key(k.name.removeprefix("vmlinuz-")))


def _newest_matching(kernels: Sequence[Path], prefix: str) -> Path | None:
    matching = [k for k in kernels if release_matches(k.name.removeprefix("vmlinuz-"), prefix)]
    return matching[-1] if matching else None


def _choices(kernels: Sequence[Path]) -> str:
    return ", ".join(k.name.removeprefix("vmlinuz-") for k in kernels) or "none"


def find_kernel(
    spec: Path | str | None = None,
    *,
    boot: Path = Path("/boot"),
    modules: Path = Path("/lib/modules"),
) -> Path:
    """The kernel image ``spec`` names: a path, or a release prefix (``6.12``, ``6.1.0-57``).

    A :class:`~pathlib.Path`, or a string with a ``/`` in it, is a file; any
    other string is matched against the releases of :func:`installed_kernels`
    (the newest match wins).  None is :data:`DEFAULT_SERIES`.
    """
    if isinstance(spec, Path) or (spec is not None and "/" in spec):
        path = Path(spec)
        if not path.is_file():
            raise NotFound(
                f"kernel image {path} does not exist; pass a vmlinuz or a release prefix"
            )
        return path
    prefix = DEFAULT_SERIES if spec is None else spec
    kernels = installed_kernels(boot, modules)
    found = _newest_matching(kernels, prefix)
    if found is None:
        raise NotFound(
            f"no kernel {prefix} with modules in {boot} (installed: {_choices(kernels)}); "
            f"pass one of these release prefixes or a vmlinuz path to --kernel, or run make setup"
        )
    return found


def default_kernel() -> Path:
    """The newest installed kernel of :data:`DEFAULT_SERIES` with its modules."""
    return find_kernel(None)
