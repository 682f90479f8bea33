"""DWARF line tables, checked against gdb (and binutils) on ELFs built here.

Lines by address follow gdb (``info line *ADDR``), which ``disassemble /s``
shows: where several rows share an address gdb keeps the last ``is_stmt``
row of the file in effect, and binutils' addr2line sometimes answers another
row.  The same comparison on Debian's debug vmlinux is in
tests/vm/test_debug_vmlinux.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from knockout.asm import disasm
from knockout.dwarf import CULines, SourceLine, dwarf_lines, lines_for_addresses, source_text
from knockout.elf import open_elf
from knockout.symbols import elf_symbols
from tests.unit.test_symbols import built, needs_gcc

__all__ = ["built"]  # the fixture, re-used from test_symbols

OTHER_C = r"""
int other_add(int a, int b)
{
	int s = a;
	for (int i = 0; i < b; i++)
		s += i ^ a;
	return s;
}
"""


def gdb_lines(path: Path, addresses: list[int]) -> list[tuple[str, int] | None]:
    """gdb's answer for each address (``info line *ADDR``): (file, line), None without one.

    The file is gdb's symtab file name (relative where the DWARF's is).
    """
    args = ["gdb", "-nx", "-batch", *(x for a in addresses for x in ("-ex", f"info line *{a:#x}"))]
    out = subprocess.run([*args, str(path)], capture_output=True, text=True, check=True).stdout
    result: list[tuple[str, int] | None] = []
    for line in out.splitlines():
        if line.startswith("Line "):
            match = re.match(r'Line (\d+) of "([^"]+)"', line)
            assert match, line
            result.append((match[2], int(match[1])))
        elif line.startswith("No line number information"):
            result.append(None)
    assert len(result) == len(addresses), out
    return result


def addr2line(path: Path, addresses: list[int]) -> list[tuple[str, int] | None]:
    """binutils' answer for each address: (file, line), None for '??'."""
    args = ["addr2line", "-e", str(path), *(f"{a:#x}" for a in addresses)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    result: list[tuple[str, int] | None] = []
    for line in out:
        match = re.match(r"^(.*):(\d+)", line)
        result.append((match[1], int(match[2])) if match and match[2] != "0" else None)
    return result


def function_addresses(path: Path, name: str) -> list[int]:
    symbol = elf_symbols(str(path)).lookup(name)
    image = open_elf(str(path))
    return [
        i.address for i in disasm(image.read(symbol.address, symbol.size), "x86_64", symbol.address)
    ]


pytestmark = [
    needs_gcc,
    pytest.mark.skipif(shutil.which("addr2line") is None, reason="needs binutils (make setup)"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb (make setup)"),
]


@pytest.mark.parametrize("variant", ["demo", "demo4"])
def test_every_address_matches_gdb(built: dict[str, Path], variant: str) -> None:
    """DWARF 5 (gcc 12's default) and DWARF 4 give gdb's file:line everywhere."""
    path = built[variant]
    lines = dwarf_lines(str(path))
    assert lines is not None
    for function in ("burn", "main"):
        addresses = function_addresses(path, function)
        got = [lines.at(a) for a in addresses]
        assert got == gdb_lines(path, addresses), function


def test_rows_interleave_like_gdb(built: dict[str, Path]) -> None:
    path = built["demo"]
    lines = dwarf_lines(str(path))
    assert lines is not None
    burn = elf_symbols(str(path)).lookup("burn")
    addresses = function_addresses(path, "burn")
    rows = lines.rows(burn.address, burn.end)
    assert rows and all(burn.address <= r.address < burn.end for r in rows)
    per_insn = lines_for_addresses(rows, addresses)
    assert [(r.file, r.line) if r else None for r in per_insn] == gdb_lines(path, addresses)


def test_rows_sharing_an_address_resolve_like_gdb() -> None:
    """Hand-made rows of the shapes found in Debian's vmlinux (shrink_slab), gdb's answers.

    0x10: of several rows, the last is_stmt one; 0x20: a non-stmt row switching
    file where an is_stmt row was already seen is ignored; 0x30: one where none
    was seen is kept; 0x40: the end of the sequence leaves no line.
    """
    rows = [
        (0x10, 1, 5, False, True),
        (0x10, 2, 7, False, True),  # switches file: ends file 1 at 0x10
        (0x10, 2, 9, False, True),
        (0x10, 2, 9, False, False),
        (0x20, 2, 11, False, True),
        (0x20, 1, 3, False, False),  # ignored
        (0x30, 2, 12, False, False),
        (0x30, 1, 4, False, False),  # kept: no is_stmt row at 0x30
        (0x40, 1, 4, True, True),
    ]
    table = CULines(rows, ["<unknown>", "a.c", "b.h"])
    assert [table.at(a) for a in (0x10, 0x1F, 0x20, 0x30, 0x3F, 0x40)] == [
        ("b.h", 9),
        ("b.h", 9),
        ("b.h", 11),
        ("a.c", 4),
        ("a.c", 4),
        None,
    ]


def test_line_to_address_is_gdbs_breakpoint(built: dict[str, Path]) -> None:
    """``file.c:LINE`` resolves where gdb puts ``break file.c:LINE`` (next line with code)."""
    if shutil.which("gdb") is None:
        pytest.skip("needs gdb")
    path = built["demo"]
    lines = dwarf_lines(str(path))
    assert lines is not None
    wanted = (15, 16, 17, 20, 24, 25)  # 20 is blank: both move on to the next line with code
    gdb = ["gdb", "-nx", "-batch", *(a for n in wanted for a in ("-ex", f"break demo.c:{n}"))]
    out = subprocess.run([*gdb, str(path)], capture_output=True, text=True, check=True).stdout
    expected = [
        (int(m[1], 16), int(m[2]))
        for m in re.finditer(r"Breakpoint \d+ at (0x[0-9a-f]+): file .*demo.c, line (\d+)", out)
    ]
    assert len(expected) == len(wanted), out
    got = [lines.addresses_for_line("demo.c", n)[0] for n in wanted]
    assert [(h.address, h.line) for h in got] == expected


def test_line_spec_resolves_through_table(built: dict[str, Path]) -> None:
    table = elf_symbols(str(built["demo"]))
    loc = table.resolve("demo.c:17")  # acc += i * i;
    assert loc.symbol is not None and loc.symbol.name == "burn"
    assert addr2line(built["demo"], [loc.address]) == [(str(built["src"]), 17)]
    with pytest.raises(LookupError, match=r"no code for demo\.c:999"):
        table.resolve("demo.c:999")


def test_no_dwarf_in_stripped_file(built: dict[str, Path]) -> None:
    assert dwarf_lines(str(built["stripped"])) is None
    with pytest.raises(LookupError, match=r"no DWARF line information in .*stripped"):
        elf_symbols(str(built["stripped"])).resolve("demo.c:17")


def test_without_aranges_uses_cu_ranges(built: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "demo.noaranges"
    subprocess.run(
        ["objcopy", "--remove-section=.debug_aranges", str(built["demo"]), str(copy)], check=True
    )
    lines = dwarf_lines(str(copy))
    assert lines is not None
    addresses = function_addresses(built["demo"], "burn")
    assert [lines.at(a) for a in addresses] == gdb_lines(built["demo"], addresses)


def test_only_the_needed_compile_unit_is_decoded(built: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.c"
    other.write_text(OTHER_C)
    main = tmp_path / "two"
    subprocess.run(["gcc", "-O2", "-g", "-o", str(main), str(built["src"]), str(other)], check=True)
    lines = dwarf_lines(str(main))
    assert lines is not None
    address = elf_symbols(str(main)).lookup("other_add").address
    assert [lines.at(address)] == gdb_lines(main, [address])
    assert len(lines._cus) == 1  # the CU of demo.c was never decoded
    lines.at(address + 1)
    assert len(lines._cus) == 1  # and other.c's table was decoded once


def test_source_text(built: dict[str, Path]) -> None:
    assert source_text(str(built["src"]), 17) == "\t\tacc += i * i;"
    assert source_text(str(built["src"]), 10_000) is None
    assert source_text("/no/such/file.c", 1) is None


def test_lines_for_addresses_before_first_row() -> None:
    rows = [SourceLine(0x10, "a.c", 1), SourceLine(0x20, "a.c", 2)]
    assert lines_for_addresses(rows, [0x8, 0x10, 0x1F, 0x20, 0x30]) == [
        None,
        rows[0],
        rows[0],
        rows[1],
        rows[1],
    ]


def test_corrupt_line_program_is_one_line(built: dict[str, Path], tmp_path: Path) -> None:
    section = subprocess.run(
        ["readelf", "-SW", str(built["demo"])], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\.debug_line\s+PROGBITS\s+\w+\s+(\w+)\s+(\w+)", section)
    assert match, section
    offset, size = int(match[1], 16), int(match[2], 16)
    data = bytearray(built["demo"].read_bytes())
    data[offset + 40 : offset + size] = b"\xff" * (size - 40)  # keep the unit header's length
    copy = tmp_path / "corrupt"
    copy.write_bytes(bytes(data))
    lines = dwarf_lines(str(copy))
    assert lines is not None
    burn = elf_symbols(str(copy)).lookup("burn")
    with pytest.raises(LookupError, match=r"corrupt DWARF .*drop --source") as exc:
        lines.at(burn.address)
    assert "\n" not in str(exc.value)
