"""Symbol tables: kallsyms text, ELF files compiled here, this process's own maps.

Expected values come from binutils (``nm``) and from ctypes, never from knockout.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from knockout.elf import open_elf, read_kcore
from knockout.errors import BadInput, NotFound, Refused
from knockout.symbols import Location, Symbol, SymbolTable, elf_symbols, kallsyms, process_symbols

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (make setup)")

DEMO_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned long sink;

__attribute__((noinline)) static unsigned long helper(unsigned long x)
{
	return x * 3 + sink;
}

__attribute__((noinline)) unsigned long burn(unsigned long n)
{
	unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i * i;
	return acc;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 1000;
	sink = burn(n) + helper(n);
	printf("%lu\n", sink);
	fflush(stdout);
	if (argc > 2)
		pause();
	return 0;
}
"""

#: an aarch64 /proc/kallsyms excerpt, with data symbols, a module and duplicates
KALLSYMS = """\
ffff800008010000 T _text
ffff800008010000 t _head
ffff800008300000 T shrink_slab_memcg
ffff800008300400 T shrink_slab
ffff800008300800 T do_shrink_slab
ffff800008300900 t cmp
ffff800008300980 T shrink_node
ffff800008301000 D shrinker_rwsem
ffff800008302000 t cmp
ffff800008302100 T _etext
ffff80000a000000 d some_data
ffff800001000000 t ext4_fill_super\t[ext4]
ffff800001000400 t cmp\t[ext4]
ffff800001000500 T ext4_sync_fs\t[ext4]
"""


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """demo.c compiled -O2 -g without frame pointers (DWARF 5 and 4), and stripped copies."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (make setup)")
    d = tmp_path_factory.mktemp("elf")
    src = d / "demo.c"
    src.write_text(DEMO_C)
    out = {"src": src}
    for name, flags in {
        "demo": ["-gdwarf-5"],
        "demo4": ["-gdwarf-4"],
        "demo_dyn": ["-gdwarf-5", "-rdynamic"],
    }.items():
        cmd = ["gcc", "-O2", "-g", "-fomit-frame-pointer", *flags, "-o", str(d / name), str(src)]
        subprocess.run(cmd, check=True, cwd=d)
        out[name] = d / name
    out["obj"] = d / "demo.o"
    subprocess.run(["gcc", "-O2", "-g", "-c", "-o", str(out["obj"]), str(src)], check=True)
    out["stripped"] = d / "demo_dyn.stripped"
    subprocess.run(["strip", "-o", str(out["stripped"]), str(out["demo_dyn"])], check=True)
    return out


def nm_symbols(path: Path, dynamic: bool = False) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of defined text symbols, as binutils' nm reads them."""
    args = ["nm", "--defined-only", "-S", *(["-D"] if dynamic else []), str(path)]
    result = {}
    for line in subprocess.run(args, capture_output=True, text=True, check=True).stdout.split("\n"):
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTW":
            result[fields[3]] = (int(fields[0], 16), int(fields[1], 16))
    return result


# --- kallsyms ------------------------------------------------------------------


@pytest.fixture
def ksyms(tmp_path: Path) -> SymbolTable:
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    return kallsyms(str(path))


def test_kallsyms_text_only_with_sizes_to_next(ksyms: SymbolTable) -> None:
    s = ksyms.lookup("shrink_slab")
    assert (s.address, s.size, s.module) == (0xFFFF800008300400, 0x400, None)
    with pytest.raises(NotFound):
        ksyms.lookup("shrinker_rwsem")  # D: data, not text
    assert ksyms.lookup("ext4_sync_fs").module == "ext4"


def test_kallsyms_close_names(ksyms: SymbolTable) -> None:
    with pytest.raises(NotFound) as exc:
        ksyms.lookup("shrnk_slab")
    assert str(exc.value) == (
        "no symbol 'shrnk_slab'; did you mean shrink_slab, do_shrink_slab, shrink_slab_memcg?"
    )


def test_resolve_specs(ksyms: SymbolTable) -> None:
    base = 0xFFFF800008300400
    assert ksyms.resolve("shrink_slab+0x150") == ksyms.resolve("shrink_slab+336")
    loc = ksyms.resolve("shrink_slab+336")
    assert (loc.address, loc.offset, str(loc)) == (base + 336, 336, "shrink_slab+0x150")
    assert ksyms.resolve(f"{base + 8:#x}") == Location(base + 8, ksyms.lookup("shrink_slab"))
    assert str(ksyms.resolve("0x10")) == "0x10"


def test_offset_past_end_names_size(ksyms: SymbolTable) -> None:
    with pytest.raises(BadInput, match=r"past the end of do_shrink_slab \(0x100 = 256 bytes\)"):
        ksyms.resolve("do_shrink_slab+0x100")
    ksyms.resolve("do_shrink_slab+0xff")


def test_duplicate_names(ksyms: SymbolTable) -> None:
    with pytest.raises(BadInput, match=r"3 symbols are called 'cmp'.*cmp@MODULE"):
        ksyms.lookup("cmp")
    assert ksyms.lookup("cmp@ext4").address == 0xFFFF800001000400
    with pytest.raises(NotFound):
        ksyms.lookup("cmp@xfs")


def test_symbolize(ksyms: SymbolTable) -> None:
    loc = ksyms.symbolize(0xFFFF800008300404)
    assert loc is not None and str(loc) == "shrink_slab+0x4"
    assert ksyms.symbolize(0x1000) is None
    # aliases at one address: the name with fewer leading underscores wins
    assert str(ksyms.symbolize(0xFFFF800008010000)) == "_head"


def test_line_spec_without_dwarf(ksyms: SymbolTable) -> None:
    with pytest.raises(NotFound, match=r"no DWARF line information.*--elf"):
        ksyms.resolve("mm/vmscan.c:420")


def test_kallsyms_zero_addresses(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("0000000000000000 T _text\n0000000000000000 T shrink_slab\n")
    with pytest.raises(Refused, match=r"kernel\.kptr_restrict=0"):
        kallsyms(str(path))


def test_kallsyms_bad_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file"):
        kallsyms(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("zzzz T foo\n")
    with pytest.raises(BadInput, match=r"bad:1: 'zzzz' is not a hex address"):
        kallsyms(str(bad))


def test_live_kallsyms() -> None:
    try:
        table = kallsyms()
    except (NotFound, Refused) as exc:
        pytest.skip(f"/proc/kallsyms not usable here: {exc}")
    text = table.lookup("_text")
    assert text.address != 0 and text.module is None
    assert table.symbolize(table.lookup("schedule").address + 1) is not None


def test_table_rejects_nothing_silently() -> None:
    table = SymbolTable([Symbol("f", 0x10, 0x10)])
    with pytest.raises(BadInput, match="cannot read"):
        table.resolve("f+zz")


# --- ELF files -------------------------------------------------------------------


@needs_gcc
def test_elf_symbols_match_nm(built: dict[str, Path]) -> None:
    table = elf_symbols(str(built["demo"]))
    expected = nm_symbols(built["demo"])
    for name in ("burn", "main", "helper"):
        s = table.lookup(name)
        assert (s.address, s.size) == expected[name], name
    assert table.images[0].path == str(built["demo"])


@needs_gcc
def test_elf_symbols_bias(built: dict[str, Path]) -> None:
    plain = elf_symbols(str(built["demo"])).lookup("burn")
    assert elf_symbols(str(built["demo"]), bias=0x10000).lookup("burn").address == (
        plain.address + 0x10000
    )


@needs_gcc
def test_stripped_falls_back_to_dynsym(built: dict[str, Path]) -> None:
    table = elf_symbols(str(built["stripped"]))
    expected = nm_symbols(built["stripped"], dynamic=True)
    burn = table.lookup("burn")
    assert (burn.address, burn.size) == expected["burn"]
    with pytest.raises(NotFound):
        table.lookup("helper")  # static: only in the .symtab strip removed


def test_bad_elf_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF\n")
    with pytest.raises(BadInput, match="not a readable ELF file") as exc:
        elf_symbols(str(text))
    assert "\n" not in str(exc.value)
    with pytest.raises(NotFound, match="no such file"):
        elf_symbols(str(tmp_path / "missing"))
    with pytest.raises(BadInput, match="is a directory"):
        elf_symbols(str(tmp_path))


# --- processes --------------------------------------------------------------------


def test_process_symbols_of_this_process() -> None:
    table = process_symbols(os.getpid())
    libc = ctypes.CDLL(None)
    for name in ("getpid", "PyObject_GetAttr"):
        func = libc[name] if name == "getpid" else getattr(ctypes.pythonapi, name)
        address = ctypes.cast(func, ctypes.c_void_p).value
        loc = table.symbolize(address or 0)
        assert loc is not None and loc.offset == 0, name
        assert name in {s.name for s in table.symbols if s.address == address}
    assert any(os.path.basename(i.path).startswith("libc.so") for i in table.images)


@needs_gcc
def test_process_symbols_pie_child(built: dict[str, Path]) -> None:
    proc = subprocess.Popen([str(built["demo"]), "10", "wait"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the child has run main
        table = process_symbols(proc.pid)
        burn = table.lookup("burn")
        (image,) = [i for i in table.images if i.path == str(built["demo"])]
        assert image.bias != 0  # gcc 12 links PIE: loaded at a random base
        assert burn.address == image.bias + nm_symbols(built["demo"])["burn"][0]
        assert burn.module == str(built["demo"])
        assert table.lookup(f"burn@{built['demo'].name}") == burn
        with open(f"/proc/{proc.pid}/mem", "rb") as mem:
            mem.seek(burn.address)
            live = mem.read(burn.size)
        linked = nm_symbols(built["demo"])["burn"][0]
        assert live == open_elf(str(built["demo"])).read(linked, burn.size)
    finally:
        proc.kill()
        proc.wait()


def test_no_such_pid() -> None:
    with pytest.raises(NotFound, match="no process 999999999; check the pid"):
        process_symbols(999999999)


@needs_gcc
def test_plt_entries_named_like_objdump(built: dict[str, Path]) -> None:
    text = subprocess.run(
        ["objdump", "-d", "-j", ".plt", "-j", ".plt.sec", str(built["demo"])],
        capture_output=True,
        text=True,
    ).stdout
    expected = {
        m[2]: int(m[1], 16) for m in re.finditer(r"^([0-9a-f]+) <(\w+@plt)>:", text, re.MULTILINE)
    }
    assert {"strtoul@plt", "printf@plt"} <= set(expected)
    table = elf_symbols(str(built["demo"]))
    for name, address in expected.items():
        assert table.lookup(name).address == address, name


@needs_gcc
def test_read_kcore_reads_through_load_segments(built: dict[str, Path]) -> None:
    """/proc/kcore is an ELF whose PT_LOAD segments map kernel addresses to file offsets;
    any ELF with segments reads the same way, checked here against objcopy's dump."""
    burn = elf_symbols(str(built["demo"])).lookup("burn")
    text = built["demo"].with_suffix(".text")
    subprocess.run(
        ["objcopy", "-O", "binary", "--only-section=.text", str(built["demo"]), str(text)],
        check=True,
    )
    sections = subprocess.run(
        ["readelf", "-SW", str(built["demo"])], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)", sections)
    assert match, sections
    start = burn.address - int(match[1], 16)
    expected = text.read_bytes()[start : start + burn.size]
    assert read_kcore(burn.address, burn.size, str(built["demo"])) == expected
    with pytest.raises(NotFound, match=r"is not in .*check the address against /proc/kallsyms"):
        read_kcore(0xFFFF_FFFF_0000_0000, 4, str(built["demo"]))
