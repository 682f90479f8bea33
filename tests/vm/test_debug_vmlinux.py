"""Debian's debug vmlinux and linux-source for the guest kernel (make setup fetches both).

- Source lines equal gdb's for every instruction of ``shrink_slab``, and the
  source text is found in the unpacked linux-source (the unit's
  ``DW_AT_comp_dir`` is relative).
- ``knockout disasm shrink_slab --kernel --elf VMLINUX --source`` in the guest:
  the live kernel's bytes, named by kallsyms, lines from the debug vmlinux
  shifted by the KASLR offset.
- The seed's four cut points found on the live kernel, planned, applied for a
  moment and reverted (the text read back equals what it was).

Missing set-up is a failure here, never a skip: ``make setup`` fetches the
files (mk/debug.mk).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knockout.asm import disasm
from knockout.dwarf import debug_vmlinux, dwarf_lines, kernel_source_dir, source_text
from knockout.elf import open_elf
from knockout.seedcuts import SEED_SERIES, seed_kernel
from knockout.symbols import elf_symbols
from knockout.targets.kernel import build_module
from knockout.vm import GuestSession, kernel_release
from tests.vm.conftest import Guest

REPO = Path(__file__).resolve().parents[2]
PY = REPO / ".venv" / "bin" / "python"
KERNEL = seed_kernel()
RELEASE = kernel_release(KERNEL)


class SeriesGuest(Guest):
    """The vm tier's :class:`Guest`, booting the seed's kernel series (not the newest kernel)."""

    @property
    def session(self) -> GuestSession:
        if self._session is None or not self._session.alive:
            self.close()
            session = GuestSession(kernel=KERNEL, rwdirs=[self.rwdir])
            session.start()
            self._session = session
            self.boots += 1
            self._dmesg_seen = 0
        return self._session


@pytest.fixture(scope="module")
def guest61(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """The shared guest if it runs the 6.1 series, else a guest of its own booting it."""
    if guest.release.startswith(SEED_SERIES + "."):
        yield guest
        return
    guest.reboot()  # one guest at a time
    own = SeriesGuest(tmp_path_factory.mktemp("guest61-rw"))
    try:
        yield own
    finally:
        own.close()


@pytest.fixture(scope="module")
def vmlinux() -> Path:
    found = debug_vmlinux(RELEASE)
    if found.path is None:
        pytest.fail(found.reason, pytrace=False)
    return found.path


@pytest.fixture(scope="module")
def source_dir() -> Path:
    found = kernel_source_dir(RELEASE)
    if found.path is None:
        pytest.fail(found.reason, pytrace=False)
    return found.path


def gdb_lines(path: Path, addresses: list[int]) -> list[tuple[str, int] | None]:
    """``info line *ADDR`` for each address: gdb's (file, line), None without one."""
    args = ["gdb", "-nx", "-batch", *(x for a in addresses for x in ("-ex", f"info line *{a:#x}"))]
    out = subprocess.run([*args, str(path)], capture_output=True, text=True, check=True).stdout
    result: list[tuple[str, int] | None] = []
    for line in out.splitlines():
        match = re.match(r'Line (\d+) of "([^"]+)"', line)
        if match:
            result.append((match[2], int(match[1])))
        elif line.startswith("No line number information"):
            result.append(None)
    assert len(result) == len(addresses), out[-2000:]
    return result


def _shrink_slab_addresses(vmlinux: Path) -> list[int]:
    symbol = elf_symbols(str(vmlinux)).lookup("shrink_slab")
    code = open_elf(str(vmlinux)).read(symbol.address, symbol.size)
    insns = disasm(code, "x86_64", symbol.address)
    assert insns and insns[-1].end == symbol.end, "shrink_slab did not decode whole"
    return [i.address for i in insns]


def test_shrink_slab_lines_equal_gdb(vmlinux: Path, source_dir: Path) -> None:
    """Every instruction; and the text of each line is in the unpacked source tree."""
    addresses = _shrink_slab_addresses(vmlinux)
    lines = dwarf_lines(str(vmlinux))
    assert lines is not None
    ours = [lines.at(a) for a in addresses]
    assert ours == gdb_lines(vmlinux, addresses)
    files = {at[0] for at in ours if at}
    assert "mm/vmscan.c" in files and "include/linux/memcontrol.h" in files, files
    texts = {at: source_text(at[0], at[1], [source_dir]) for at in ours if at}
    assert None not in texts.values(), texts
    assert any("CSS_ONLINE" in (t or "") for t in texts.values())  # mem_cgroup_online()


def _run_json(guest: Guest, command: str, timeout: float = 300) -> Any:
    out = guest.run(f"cd {REPO} && {command}", timeout=timeout).output
    start = min(i for i in (out.find("["), out.find("{")) if i >= 0)
    return json.loads(out[start:])


def test_live_kernel_with_debug_vmlinux(guest61: Guest, vmlinux: Path) -> None:
    """``disasm --kernel --elf``: kallsyms addresses, gdb's lines shifted by the KASLR offset.

    The guest has no /proc/kcore: the live text is read through knockout's module.
    """
    ko = build_module(RELEASE)
    guest61.run(f"lsmod | grep -q '^knockout ' || insmod {ko}")
    records = _run_json(
        guest61,
        f"{PY} -m knockout disasm shrink_slab --kernel --elf {vmlinux} --source --json",
    )
    kallsyms = guest61.run("grep -E ' (_text|shrink_slab)$' /proc/kallsyms").output.split()
    live = {kallsyms[i + 2]: int(kallsyms[i], 16) for i in range(0, len(kallsyms), 3)}
    offset = live["_text"] - elf_symbols(str(vmlinux)).lookup("_text").address
    assert records[0]["address"] == live["shrink_slab"] and records[0]["symbol"] == "shrink_slab"
    expected = gdb_lines(vmlinux, [r["address"] - offset for r in records])
    got = [(r["file"], r["line"]) if r["line"] is not None else None for r in records]
    assert got == expected


@pytest.fixture(scope="module")
def seed_cuts_found(guest61: Guest, vmlinux: Path, source_dir: Path) -> list[dict[str, Any]]:
    """``python -m knockout.seedcuts --json`` in the guest (module built on the host)."""
    build_module(RELEASE)
    cuts: list[dict[str, Any]] = _run_json(
        guest61, f"{PY} -m knockout.seedcuts --json --vmlinux {vmlinux} --source-dir {source_dir}"
    )
    return cuts


def test_seed_cut_points_found_and_planned(
    seed_cuts_found: list[dict[str, Any]], vmlinux: Path
) -> None:
    by_name = {c["name"]: c for c in seed_cuts_found}
    assert set(by_name) == {
        "shrink_slab returns 0",
        "do_shrink_slab returns 0",
        "shrinker info load forced to NULL",
        "mem_cgroup_online() forced false",
    }
    refused = {c["name"]: c["refusal"] for c in seed_cuts_found if not c["planned"]}
    assert not refused, refused
    info = by_name["shrinker info load forced to NULL"]
    assert info["spec"].startswith("shrink_slab+0x") and info["intent"].startswith("--set ")
    assert "->shrinker_info" in info["text"] and info["source"].startswith("mm/vmscan.c:")
    online = by_name["mem_cgroup_online() forced false"]
    assert "CSS_ONLINE" in online["text"]
    assert online["source"].startswith("include/linux/memcontrol.h:")
    # the inner points are not sites the kernel patches: live bytes = the file's
    text = elf_symbols(str(vmlinux)).lookup("shrink_slab")
    image = open_elf(str(vmlinux))
    for cut in (info, online):
        offset = int(cut["spec"].split("+")[1], 16)
        old = bytes.fromhex(cut["old"])
        assert image.read(text.address + offset, len(old)) == old, cut


APPLY_SCRIPT = """
import json, sys
from knockout.plan import plan_at
from knockout.seedcuts import seed_cuts
from knockout.targets import cut
from knockout.targets.kernel import KernelTarget
from pathlib import Path
out = []
with KernelTarget() as t:
    for c in seed_cuts(t, vmlinux=Path(sys.argv[1]), source_dir=Path(sys.argv[2])):
        before = t.read(c.cut.address, len(c.cut.old))
        with cut(t, c.cut) as applied:
            held = t.in_place(applied)
        after = t.read(c.cut.address, len(c.cut.old))
        out.append({"name": c.name, "in_place": held, "restored": before == after == c.cut.old})
print(json.dumps(out))
"""


def test_seed_cuts_apply_and_revert(
    guest61: Guest, vmlinux: Path, source_dir: Path, seed_cuts_found: list[dict[str, Any]]
) -> None:
    """Each point is cuttable on the live kernel: applied, proven in place, reverted exactly."""
    script = guest61.rwdir / "apply_seed_cuts.py"
    script.write_text(APPLY_SCRIPT)
    results = _run_json(guest61, f"{PY} {script} {vmlinux} {source_dir}")
    assert [r["name"] for r in results] == [c["name"] for c in seed_cuts_found]
    for r in results:
        assert r["in_place"] is None and r["restored"], r
    guest61.assert_dmesg_clean()
