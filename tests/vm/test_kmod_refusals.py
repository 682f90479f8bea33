"""Hidden ways into a range, refused by the module for real (a test kernel module builds them).

``tests/vm/kmod_fixture/ko_fixture.c`` holds hand-written functions whose
shapes the guest's kernel may never produce on this CPU: a retpoline-style
``call *%rax`` + NOPs, a ``.cold`` part jumping back into its function, an
exception-table fixup landing inside a range.  The scenario asks knockout.ko
to cut each such range (refused, no byte written) and the range right next
to it (accepted, reverted at once), so the rule is shown to be exact.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from knockout.errors import KnockoutError
from knockout.targets.kernel import CACHE_ROOT, build_module
from knockout.vm import default_kernel, kernel_release
from tests.vm.conftest import Guest
from tests.vm.test_kernel_cut import ko, load, scenario

__all__ = ["FIXTURE_DIR", "build_fixture", "check_refusals", "installed_kernels", "ko"]

#: the test module's sources
FIXTURE_DIR = Path(__file__).resolve().parent / "kmod_fixture"
_FIXTURE_SOURCES = ("ko_fixture.c", "Kbuild")


def installed_kernels() -> dict[str, Path]:
    """The newest installed ``/boot/vmlinuz-*-amd64`` of each series (``6.1``, ``6.12``...)."""
    newest: dict[str, tuple[list[int | str], Path]] = {}
    for vmlinuz in Path("/boot").glob("vmlinuz-*-amd64"):
        release = vmlinuz.name.removeprefix("vmlinuz-")
        if not Path("/lib/modules", release, "modules.dep").exists():
            continue
        series = ".".join(re.split(r"[.-]", release)[:2])
        key = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]
        if series not in newest or key > newest[series][0]:
            newest[series] = (key, vmlinuz)
    return {series: path for series, (_, path) in newest.items()}


def build_fixture(release: str) -> Path:
    """``ko_fixture.ko`` for ``release``, built into the kmod cache unless already there."""
    h = hashlib.sha256()
    for name in _FIXTURE_SOURCES:
        h.update(name.encode() + b"\0" + (FIXTURE_DIR / name).read_bytes() + b"\0")
    root = Path(os.environ.get("KNOCKOUT_KMOD_CACHE") or CACHE_ROOT)
    out = root / f"{release}-fixture-{h.hexdigest()[:12]}"
    ko_path = out / "ko_fixture.ko"
    if ko_path.exists():
        return ko_path
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fixture-", dir=root))
    try:
        for name in _FIXTURE_SOURCES:
            shutil.copy2(FIXTURE_DIR / name, work / name)
        kdir = f"/lib/modules/{release}/build"
        proc = subprocess.run(
            ["make", "-C", kdir, f"M={work}", "modules"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise KnockoutError(f"building ko_fixture.ko for {release} failed: {proc.stderr}")
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ko_path


def check_refusals(guest: Guest) -> None:
    """Each hidden way in is refused with its reason; each control range next to it is not."""
    r = scenario(guest, "refusals", build_fixture(guest.release))
    cases = r["cases"]
    reasons = {
        "retpoline_call": "inside the 5-byte jmp",
        "new_indirect_call": "NEW has a call",
        "new_rel32_inside": "rel32 branch at +0 aimed inside",
        "cold_into": "kofx_cold_fn.cold",
        "fixup_into": "exception fixup of kofx_extable_fn+0x5",
    }
    for name, case in cases.items():
        assert case["text_matches"], (name, case)  # the fixture's bytes are what we think
        assert case["unchanged"], (name, case)
        if name in reasons:
            assert case["errno"] in (errno.EBUSY, errno.EINVAL), (name, case)
            assert reasons[name] in case["answer"], (name, case)
        else:
            assert case["errno"] == 0 and case["answer"].startswith("id="), (name, case)
            assert case["reverted"] == [0, "reverted=1"], (name, case)
    assert set(cases) == {*reasons, "call_ends_at_5", "cold_at_start", "fixup_at_start"}
    assert r["remaining"] == [], r
    assert r["rmmod_fixture"][0] == 0, r
    guest.assert_dmesg_clean()


def test_hidden_ways_into_a_range_are_refused(guest: Guest, ko: Path) -> None:
    assert guest.release == kernel_release(default_kernel())
    check_refusals(load(guest, ko))


def _relocations(ko_path: Path) -> dict[str, list[str]]:
    """``ko_path``'s relocations, by relocation section (``readelf -rW``)."""
    out = subprocess.run(
        ["readelf", "-rW", str(ko_path)], capture_output=True, text=True, check=True
    ).stdout
    sections: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        m = re.match(r"Relocation section '([^']+)'", line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif current and "R_X86_64_" in line:
            sections[current].append(line)
    return sections


def _default_thunk_uses(relocations: dict[str, list[str]]) -> int:
    return sum(1 for lines in relocations.values() for r in lines if "__x86_return_thunk" in r)


def test_no_module_returns_through_the_default_thunk_unpatched() -> None:
    """Every compiled return in the guest's modules is listed for the loader to patch.

    A module's "jmp __x86_return_thunk" returns are rewritten at load by
    apply_returns() only where objtool listed them in .return_sites; one that
    is not listed runs the default thunk, which warns from 6.9 on ("Unpatched
    return thunk in use": the 6.12 CI failure, from the fixture's init and exit,
    built without objtool).  The fixture now has no compiled code at all.
    """
    for series, vmlinuz in sorted(installed_kernels().items()):
        release = vmlinuz.name.removeprefix("vmlinuz-")
        fixture = _relocations(build_fixture(release))
        assert _default_thunk_uses(fixture) == 0, (series, fixture)
        ours = _relocations(build_module(release))
        listed = len(ours.get(".rela.return_sites", []))
        assert _default_thunk_uses(ours) == listed, (series, listed)
