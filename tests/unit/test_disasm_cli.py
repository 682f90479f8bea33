"""``knockout disasm``: output against objdump, the JSON records, every bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from knockout.arch import get_arch
from knockout.cli import main
from knockout.elf import open_elf
from tests.unit.test_symbols import KALLSYMS, built, needs_gcc

__all__ = ["built"]  # the fixture, re-used from test_symbols


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def objdump_function(path: Path, name: str) -> dict[int, str]:
    """address -> hex bytes of each instruction of ``name``, as objdump decodes it."""
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--disassemble={name}", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(m[1], 16): m[1] for m in re.finditer(r"^\s+([0-9a-f]+):\s", text, re.MULTILINE)}


@needs_gcc
def test_function_with_source(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["disasm", "burn", "--elf", str(built["demo"]), "--source"], capsys)
    assert (rc, err) == (0, "")
    assert f"{built['src']}:17\n17\t\t\tacc += i * i;" in out
    listed = [int(a, 16) for a in re.findall(r"^.. (0x[0-9a-f]{16}) <burn", out, re.MULTILINE)]
    assert listed == sorted(objdump_function(built["demo"], "burn"))
    assert re.search(r"^=> 0x[0-9a-f]{16} <burn>:\t[0-9a-f ]+\t\S", out, re.MULTILINE)


@needs_gcc
def test_calls_are_symbolized(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["disasm", "main", "--elf", str(built["demo"])], capsys)
    nm = subprocess.run(["nm", str(built["demo"])], capture_output=True, text=True).stdout
    match = re.search(r"^([0-9a-f]+) T burn$", nm, re.MULTILINE)
    assert match, nm
    assert rc == 0 and f"call {int(match[1], 16):#x} <burn>" in out


@needs_gcc
def test_json_records(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        ["disasm", "burn+0x3", "--elf", str(built["demo"]), "--json", "--source"], capsys
    )
    records = json.loads(out)
    assert rc == 0 and records
    first = records[0]
    assert set(first) == {"address", "symbol", "offset", "bytes", "text", "file", "line"}
    assert first["symbol"] == "burn" and first["offset"] == 0
    assert {r["address"] for r in records} == set(objdump_function(built["demo"], "burn"))
    image = open_elf(str(built["demo"]))
    for r in records:
        assert bytes.fromhex(r["bytes"]) == image.read(r["address"], len(r["bytes"]) // 2)
        assert r["file"] == str(built["src"]) and isinstance(r["line"], int)


@needs_gcc
def test_line_spec(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["disasm", "demo.c:17", "--elf", str(built["demo"])], capsys)
    assert rc == 0 and re.search(r"^=> 0x[0-9a-f]+ <burn\+0x[0-9a-f]+>", out, re.MULTILINE)


@needs_gcc
def test_process_memory(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.Popen([str(built["demo"]), "10", "wait"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        rc, live, _ = run(["disasm", "burn", "--pid", str(proc.pid), "--json", "--source"], capsys)
    finally:
        proc.kill()
        proc.wait()
    rc2, filed, _ = run(["disasm", "burn", "--elf", str(built["demo"]), "--json"], capsys)
    assert rc == rc2 == 0
    live_records, file_records = json.loads(live), json.loads(filed)
    assert [r["bytes"] for r in live_records] == [r["bytes"] for r in file_records]
    bias = live_records[0]["address"] - file_records[0]["address"]
    assert bias != 0 and bias % 4096 == 0
    assert live_records[0]["file"] == str(built["src"])


def test_raw_hex_seed_words(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        ["disasm", "--arch", "arm64", "--hex", "1c0080d2 c0035fd6", "--vma", "0x1000"], capsys
    )
    assert rc == 0
    assert "0x0000000000001000:\t1c 00 80 d2\t0xd280001c\tmov x28, #0" in out
    assert "0x0000000000001004:\tc0 03 5f d6\t0xd65f03c0\tret" in out


def test_raw_hex_x86_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["disasm", "--arch", "x86_64", "--hex", "31c0c3", "--json"], capsys)
    assert rc == 0
    assert [(r["address"], r["text"]) for r in json.loads(out)] == [(0, "xor eax, eax"), (2, "ret")]


def test_undecodable_bytes_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["disasm", "--arch", "arm64", "--hex", "ffffffffc0035fd6"], capsys)
    assert rc == 0 and "(bad)" in out and out.rstrip().endswith("ret")


def fake_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: bytes | None) -> Path:
    """A kallsyms file and a kernel target reading ``text`` (None: one that cannot read)."""
    from knockout.errors import NotFound

    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)

    class KernelTarget:
        def __init__(self, *, load: bool = True) -> None:
            assert not load, "disasm must not load the module"
            if text is None:  # what the real one says without /proc/kcore or the module
                raise NotFound("/proc/knockout does not exist; load the module (knockout.ko) first")

        def read(self, address: int, size: int) -> bytes:
            assert text is not None
            return (text * (size // len(text) + 1))[:size]

    module = types.ModuleType("knockout.targets.kernel")
    module.KernelTarget = KernelTarget  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "knockout.targets.kernel", module)
    return path


def test_kernel_without_kcore_uses_kernel_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words = bytes.fromhex("1c0080d2")  # mov x28, #0
    path = fake_kernel(monkeypatch, tmp_path, words)
    monkeypatch.setattr("knockout.commands.disasm.host_arch", lambda: get_arch("arm64"))
    rc, out, err = run(["disasm", "shrink_slab+0x150", "--kallsyms", str(path)], capsys)
    assert (rc, err) == (0, "")
    assert "=> 0xffff800008300550 <shrink_slab+0x150>:\t1c 00 80 d2\t0xd280001c\tmov x28, #0" in out
    assert out.count("\n") == 0x400 // 4  # the whole function, sized to the next symbol


# --- bad input: one line on stderr, exit status 2, nothing on stdout ------------------


def bad_cases(built: dict[str, Path], tmp_path: Path) -> list[tuple[list[str], str]]:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    demo = str(built["demo"])
    return [
        (["burnn", "--elf", demo], "no symbol 'burnn'; did you mean burn"),
        (["burn+0x1000", "--elf", demo], "past the end of burn"),
        (["burn", "--elf", str(tmp_path / "missing")], "no such file"),
        (["burn", "--elf", str(text)], "not a readable ELF file"),
        (["burn", "--elf", str(built["stripped"]), "--source"], "no DWARF line information"),
        (["burn", "--elf", str(built["obj"]), "--source"], "relocatable object"),
        (["--arch", "x86_64", "--hex", "zz"], "is not hex bytes"),
        (["--hex", "c3"], "--hex needs --arch"),
        (["--arch", "mips", "--hex", "c3"], "unknown architecture"),
        (["burn", "--pid", "999999999"], "no process with pid 999999999"),
        (["burn", "--elf", demo, "--length", "0"], "positive number of bytes"),
        ([], "name what to disassemble"),
    ]


@needs_gcc
def test_bad_input(
    built: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in bad_cases(built, tmp_path):
        rc, out, err = run(["disasm", *argv], capsys)
        assert rc == 2, argv
        assert out == "", argv
        assert err.startswith("knockout: ") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)


def test_kernel_without_kcore_or_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fake_kernel(monkeypatch, tmp_path, None)
    rc, out, err = run(["disasm", "shrink_slab", "--kernel", "--kallsyms", str(path)], capsys)
    assert (rc, out) == (2, "")
    assert "no /proc/kcore" in err and "--elf vmlinux" in err and err.count("\n") == 1


def test_kernel_target_not_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knockout.errors import NotFound

    path = fake_kernel(monkeypatch, tmp_path, b"\x90")

    class Unloaded:
        def __init__(self, *, load: bool = True) -> None:
            raise NotFound("knockout.ko is not loaded; run make -C knockout/kmod && insmod")

    sys.modules["knockout.targets.kernel"].KernelTarget = Unloaded  # type: ignore[attr-defined]
    rc, out, err = run(["disasm", "shrink_slab", "--kallsyms", str(path)], capsys)
    assert (rc, out) == (2, "")
    assert "knockout.ko is not loaded" in err and "--elf vmlinux" in err


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_subprocess_exit_status(built: dict[str, Path]) -> None:
    """The installed entry point: exit status 2 and one line for an unknown symbol."""
    result = subprocess.run(
        [sys.executable, "-m", "knockout", "disasm", "nosuch", "--elf", str(built["demo"])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no symbol 'nosuch'" in result.stderr


def test_changed_bytes_are_decoded_again() -> None:
    """The listing cache is keyed on the bytes read: a cut shows up at once."""
    from knockout.listing import Disassembler
    from knockout.symbols import Symbol, SymbolTable

    table = SymbolTable([Symbol("f", 0x1000, 8)])
    memory = bytearray(bytes.fromhex("f30f1efa31c0c390"))  # endbr64; xor eax,eax; ret; nop

    def read(address: int, size: int) -> bytes:
        return bytes(memory[address - 0x1000 : address - 0x1000 + size])

    d = Disassembler(table, read, "x86_64")
    before = [line.insn.text for line in d.lines(0x1000, 8)]
    assert before == ["endbr64", "xor eax, eax", "ret", "nop"]
    assert d.lines(0x1000, 8) is d.lines(0x1000, 8)
    memory[4:6] = bytes.fromhex("9090")
    after = [line.insn.text for line in d.lines(0x1000, 8)]
    assert after == ["endbr64", "nop", "nop", "ret", "nop"]


FREESTANDING_C = r"""
unsigned long sink;

__attribute__((noinline)) unsigned long burn(unsigned long n)
{
	unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i * i;
	return acc;
}

void _start(void)
{
	sink = burn(1000);
	for (;;)
		;
}
"""


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None, reason="needs gcc-aarch64-linux-gnu"
)
def test_aarch64_elf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "free.c"
    src.write_text(FREESTANDING_C)
    elf = tmp_path / "free.arm64"
    cc = ["aarch64-linux-gnu-gcc", "-O2", "-g", "-fomit-frame-pointer", "-nostdlib"]
    subprocess.run([*cc, "-ffreestanding", "-static", "-o", str(elf), str(src)], check=True)
    rc, out, _ = run(["disasm", "_start", "--elf", str(elf), "--json", "--source"], capsys)
    records = json.loads(out)
    assert rc == 0
    dump = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--disassemble=_start", str(elf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = re.findall(r"^\s+([0-9a-f]+):\s+([0-9a-f]{8})\s", dump, re.MULTILINE)
    assert [(r["address"], r["bytes"]) for r in records] == [
        (int(a, 16), bytes.fromhex(w)[::-1].hex()) for a, w in words
    ]
    nm = subprocess.run(["aarch64-linux-gnu-nm", str(elf)], capture_output=True, text=True)
    burn = re.search(r"^([0-9a-f]+) T burn$", nm.stdout, re.MULTILINE)
    assert burn is not None
    calls = [r["text"] for r in records if r["text"].startswith("bl ")]
    assert calls == [f"bl #{int(burn[1], 16):#x} <burn>"]
    # lines as gdb gives them (where rows share an address, the last is_stmt one)
    lines = [ex for r in records for ex in ("-ex", f"info line *{r['address']:#x}")]
    said = subprocess.run(
        ["gdb-multiarch", "-nx", "-batch", *lines, str(elf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    gdb_lines = [int(m[1]) for m in re.finditer(r'^Line (\d+) of "', said, re.MULTILINE)]
    assert [r["line"] for r in records] == gdb_lines
    assert all(r["file"].endswith("free.c") for r in records)


def test_unknown_symbol_is_reported_before_the_kernel_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fake_kernel(monkeypatch, tmp_path, None)  # no kcore, no kernel target
    rc, out, err = run(["disasm", "main", "--kallsyms", str(path)], capsys)
    assert (rc, out) == (2, "")
    assert err == (
        f"knockout: no symbol 'main' in {path} "
        "(the live kernel; for user code pass --elf FILE or --pid PID)\n"
    )


def test_words_as_the_seed_writes_them(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["disasm", "--arch", "arm64", "--words", "0xd280001c,0xd65f03c0"], capsys)
    assert (rc, err) == (0, "")
    assert [line.split("\t")[-1] for line in out.splitlines()] == ["mov x28, #0", "ret"]
    assert "1c 00 80 d2\t0xd280001c" in out
    rc, _, err = run(["disasm", "--arch", "x86_64", "--words", "0x90"], capsys)
    assert rc == 2 and "no fixed instruction words; give the bytes with --hex" in err
    rc, _, err = run(["disasm", "--arch", "arm64", "--words", "zz"], capsys)
    assert rc == 2 and "is not instruction words" in err
