"""knockout.textcheck on the cached 6.1 debug vmlinux (make debug-vmlinux), and the demo's line."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from knockout.commands.demo import summary
from knockout.symbols import elf_symbols
from knockout.textcheck import (
    NOP5,
    boot_patch_tables,
    check_functions,
    compare_with_vmlinux,
    vmlinux_clause,
)

RELEASE = "6.1.0-57-amd64"  # the guest's kernel; make debug-vmlinux caches its vmlinux
VMLINUX = Path("/var/cache/knockout/debug") / RELEASE / "vmlinux"
DELTA = 0x1E00000  # a KASLR shift (2 MiB aligned, like the kernel's)

needs_vmlinux = pytest.mark.skipif(
    not VMLINUX.is_file(), reason=f"no {VMLINUX}: run 'make debug-vmlinux'"
)


def _function(name: str) -> tuple[int, bytes]:
    symbol = elf_symbols(str(VMLINUX)).lookup(name)
    return symbol.address, boot_patch_tables(VMLINUX).image.read(symbol.address, symbol.size)


def _branch_target(address: int, code: bytes) -> int:
    return address + 5 + int(struct.unpack_from("<i", code, 1)[0])


def _kaslr_shifted(name: str, link: int, code: bytes) -> bytearray:
    """``code`` as the decompressor leaves it at ``link + DELTA``: absolute words moved."""
    out = bytearray(code)
    for address, kind in boot_patch_tables(VMLINUX).relocations(link, link + len(code)):
        off = address - link
        if kind in (10, 11):  # R_X86_64_32, _32S
            was = struct.unpack_from("<I", out, off)[0]
            struct.pack_into("<I", out, off, (was + DELTA) & 0xFFFFFFFF)
    return out


@needs_vmlinux
def test_tables_parse_with_sites_inside_shrink_slab() -> None:
    link, code = _function("shrink_slab")
    tables = boot_patch_tables(VMLINUX)
    assert tables.version == (6, 1)
    sites = tables.sites(link, link + len(code))
    by_table = {s.table for s in sites}
    assert {"ftrace", "return thunks", "jump labels"} <= by_table
    symbols = elf_symbols(str(VMLINUX))
    (fentry,) = [s for s in sites if s.table == "ftrace"]
    # the __mcount_loc entry is the function's first instruction: call __fentry__
    assert fentry.address == link and fentry.size == 5 and code[0] == 0xE8
    assert _branch_target(link, code) == symbols.lookup("__fentry__").address
    thunk = symbols.lookup("__x86_return_thunk").address
    for site in (s for s in sites if s.table == "return thunks"):
        off = site.address - link
        assert code[off] == 0xE9 and _branch_target(site.address, code[off:]) == thunk
    for site in (s for s in sites if s.table == "jump labels"):
        off = site.address - link
        head = code[off : off + site.size]
        assert site.size in (2, 5) and (head in (NOP5, b"\x66\x90") or head[0] in (0xE9, 0xEB))
    for site in sites:
        assert link - 16 < site.address < link + len(code)


@needs_vmlinux
def test_alternatives_and_lock_prefixes_parse_in_the_text() -> None:
    tables = boot_patch_tables(VMLINUX)
    text = tables.image.elf.get_section_by_name(".text")
    assert text is not None
    lo, hi = text["sh_addr"], text["sh_addr"] + text["sh_size"]
    alternatives = tables.table("alternatives").sites
    assert len(alternatives) > 1000
    inside = [s for s in alternatives if lo <= s.address < hi]
    assert len(inside) > len(alternatives) // 2 and all(0 < s.size < 64 for s in alternatives)
    locks = tables.table("lock prefixes").sites
    assert locks and all(tables.image.read(s.address, 1) == b"\xf0" for s in locks[:200])


@needs_vmlinux
def test_unshifted_copy_is_byte_for_byte() -> None:
    link, code = _function("do_shrink_slab")
    check = compare_with_vmlinux(VMLINUX, "do_shrink_slab", link, code)
    assert check.ok and not check.differences and check.patched == {}
    assert check.line() == "do_shrink_slab: byte for byte the debug vmlinux"


def _booted(name: str) -> tuple[int, bytearray, int, int]:
    """A synthetic live copy: KASLR-shifted, ftrace site nop5, one return thunk ``ret; int3``."""
    link, code = _function(name)
    live = _kaslr_shifted(name, link, code)
    sites = boot_patch_tables(VMLINUX).sites(link, link + len(code))
    live[0:5] = NOP5
    thunk = next(s.address - link for s in sites if s.table == "return thunks")
    live[thunk : thunk + 5] = b"\xc3\xcc\xcc\xcc\xcc"
    return link, live, thunk, len(code)


@needs_vmlinux
def test_boot_patched_copy_is_explained() -> None:
    link, live, _thunk, _size = _booted("shrink_slab")
    check = compare_with_vmlinux(VMLINUX, "shrink_slab", link + DELTA, bytes(live))
    assert check.ok, check.line()
    assert check.patched["ftrace"] == 1 and check.patched["return thunks"] == 1
    assert check.patched["KASLR relocations"] > 0  # shrink_slab has R_X86_64_32S immediates
    assert check.link_address == link and check.live_address == link + DELTA
    assert "sites the kernel patched at boot (KASLR relocations" in check.line()
    assert "ftrace 1, return thunks 1" in check.line()


@needs_vmlinux
def test_one_extra_byte_is_unexplained() -> None:
    link, live, _thunk, size = _booted("shrink_slab")
    tables = boot_patch_tables(VMLINUX)
    covered = {a - link for s in tables.sites(link, link + size) for a in range(s.address, s.end)}
    covered |= {a - link + i for a, _k in tables.relocations(link, link + size) for i in range(8)}
    off = next(i for i in range(size // 2, size) if i not in covered)
    live[off] ^= 0x01
    check = compare_with_vmlinux(VMLINUX, "shrink_slab", link + DELTA, bytes(live))
    assert not check.ok
    (bad,) = check.unexplained
    assert bad.address == link + DELTA + off and bad.symbol == f"shrink_slab+{off:#x}"
    assert len(bad.live) == 1 and bad.live[0] == bad.vmlinux[0] ^ 0x01
    assert "1 unexplained difference" in check.line() and f"+{off:#x}" in check.line()
    assert check.patched["ftrace"] == 1  # the boot-patched sites are still explained


@needs_vmlinux
def test_a_cut_left_at_the_ftrace_site_is_unexplained() -> None:
    link, live, _thunk, _size = _booted("do_shrink_slab")
    live[0:5] = b"\x31\xc0\xc3\xcc\xcc"  # xor eax, eax; ret: a cut not reverted
    check = compare_with_vmlinux(VMLINUX, "do_shrink_slab", link + DELTA, bytes(live))
    assert not check.ok
    (bad,) = check.unexplained
    assert bad.symbol == "do_shrink_slab+0x0" and "ftrace site" in bad.why_not


@needs_vmlinux
def test_a_wrong_kaslr_shift_is_unexplained() -> None:
    link, live, _thunk, _size = _booted("shrink_slab")
    check = compare_with_vmlinux(VMLINUX, "shrink_slab", link + DELTA + 0x200000, bytes(live))
    assert not check.ok and "KASLR relocations" not in check.patched


@needs_vmlinux
def test_check_functions_and_the_demo_line() -> None:
    functions = {}
    for name in ("shrink_slab", "do_shrink_slab"):
        link, live, _thunk, _size = _booted(name)
        functions[name] = (link + DELTA, bytes(live))
    doc = check_functions(functions, VMLINUX)
    assert doc["ok"] and doc["patched"]["ftrace"] == 2 and doc["patched"]["return thunks"] == 2
    assert set(doc["functions"]) == {"shrink_slab", "do_shrink_slab"}
    clause = vmlinux_clause(doc)
    total = sum(doc["patched"].values())
    assert clause.startswith(f"the debug vmlinux's except {total} sites the kernel patched")


def _demo_doc(text: dict[str, Any]) -> dict[str, Any]:
    trial = {"verdict": "gone", "explained": 0.9, "cuts": [], "writes": [], "heat_moved": {}}
    measured = {"sys_pct": 10.0, "reclaim_events_per_s": 1.0, "read_mb_s": 1.0}
    return {
        "options": {"children": 10, "kmem": False},
        "symptom": {"healthy": measured, "with_children": measured},
        "seed_cuts": [],
        "remedy": {**trial, "writes": [{"path": "pod/memory.max", "value": "1"}]},
        "climb": {"frames": [], "conclusion": "-"},
        "text": text,
    }


def _text_line(doc: dict[str, Any]) -> str:
    (line,) = [x for x in summary(doc) if x.startswith("the text of ")]
    return line


def test_summary_says_what_the_vmlinux_comparison_found() -> None:
    vmlinux = {"vmlinux": "v", "ok": True, "patched": {"ftrace": 2, "return thunks": 5}}
    text = {"functions": ["do_shrink_slab", "shrink_slab"], "identical": True, "vmlinux": vmlinux}
    assert _text_line(_demo_doc(text)) == (
        "the text of do_shrink_slab, shrink_slab after every cut: byte for byte what it was "
        "before, and the debug vmlinux's except 7 sites the kernel patched at boot "
        "(ftrace 2, return thunks 5)"
    )
    bad = {
        "vmlinux": "v",
        "ok": False,
        "patched": {},
        "functions": {
            "f": {
                "differences": [
                    {"symbol": "f+0x3", "live": "01", "vmlinux": "00", "explained_by": []}
                ]
            }
        },
    }
    text = {"functions": ["f"], "identical": False, "vmlinux": bad}
    assert _text_line(_demo_doc(text)).endswith(
        "NOT what it was, and NOT the debug vmlinux's: 1 unexplained difference(s) (f+0x3 01 vs 00)"
    )
    text = {"functions": ["f"], "identical": True}  # a document from before the comparison
    assert _text_line(_demo_doc(text)).endswith("not compared with the debug vmlinux")
