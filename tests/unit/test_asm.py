"""asm()/disasm() and ``knockout asm``."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from knockout.asm import asm, disasm
from knockout.cli import main
from knockout.errors import BadInput, NotFound

pytest.importorskip("keystone", reason="keystone-engine has no wheel for this host")
# the module, not the function knockout re-exports under the same name
asm_module = importlib.import_module("knockout.asm")


@pytest.mark.parametrize(
    ("arch", "text", "expected"),
    [
        ("arm64", "mov x28, #0; ret", ["mov x28, #0", "ret"]),
        ("aarch64", "ldr x28, [x0, #840]\nmov w0, #0", ["ldr x28, [x0, #0x348]", "mov w0, #0"]),
        ("x86_64", "xor eax, eax; ret", ["xor eax, eax", "ret"]),
        ("amd64", "mov rbx, qword ptr [rip + 0x10]", ["mov rbx, qword ptr [rip + 0x10]"]),
    ],
)
def test_asm_round_trips_through_capstone(arch: str, text: str, expected: list[str]) -> None:
    assert [i.text for i in disasm(asm(text, arch), arch)] == expected


def test_vma_makes_branches_right() -> None:
    data = asm("jmp 0x1000", "x86_64", vma=0x2000)
    assert [str(i) for i in disasm(data, "x86_64", vma=0x2000)] == ["0x2000: jmp 0x1000"]
    data = asm("bl #0x1000", "arm64", vma=0x2000)
    assert [str(i) for i in disasm(data, "arm64", vma=0x2000)] == ["0x2000: bl #0x1000"]


def test_disasm_stops_at_the_first_undecodable_byte() -> None:
    insns = disasm(bytes.fromhex("c0035fd6ffffffff"), "arm64", vma=0x10)
    assert [i.text for i in insns] == ["ret"] and insns[-1].end == 0x14


def test_errors_name_the_line() -> None:
    with pytest.raises(BadInput, match=r"^line 2: 'bogus rax': .*; fix that statement$"):
        asm("xor eax, eax\nbogus rax\nret", "x86_64")
    with pytest.raises(BadInput, match=r"^line 1: 'mov x0, #0x123456789'"):
        asm("mov x0, #0x123456789; ret", "arm64")
    with pytest.raises(BadInput, match="assembles to nothing"):
        asm("  ", "x86_64")
    with pytest.raises(BadInput, match="unknown architecture 'mips'"):
        asm("nop", "mips")


def test_missing_keystone_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    asm_module._keystone.cache_clear()
    monkeypatch.setitem(sys.modules, "keystone", None)  # import keystone -> ImportError
    try:
        with pytest.raises(NotFound, match=r"pip install keystone-engine"):
            asm("nop", "x86_64")
    finally:
        asm_module._keystone.cache_clear()


def test_cli_asm_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asm", "--arch", "arm64", "mov x28, #0; ret", "--vma", "0x1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "1c0080d2c0035fd6",
        "0x1000: 1c0080d2  0xd280001c  mov x28, #0",  # the word, as the seed writes it
        "0x1004: c0035fd6  0xd65f03c0  ret",
    ]


def test_cli_asm_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asm", "--arch", "x86_64", "xor eax, eax; ret", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["hex"] == "31c0c3" and record["arch"] == "x86_64"
    assert [i["text"] for i in record["instructions"]] == ["xor eax, eax", "ret"]


def test_cli_asm_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asm", "--arch", "x86_64", "nop; frob"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("knockout: line 1: 'frob'") and err.count("\n") == 1
    assert main(["asm", "--arch", "x86_64", "nop", "--vma", "zz"]) == 2
    assert "is not an integer" in capsys.readouterr().err


def test_labels_do_not_hide_the_bad_line() -> None:
    with pytest.raises(BadInput, match=r"^line 2: 'bogus': "):
        asm("jmp end\nbogus\nend: ret", "x86_64")
    with pytest.raises(BadInput, match=r"^cannot assemble 'b nowhere': .*check labels"):
        asm("b nowhere", "arm64")
    assert disasm(asm("b end // skip one\nnop\nend: ret", "arm64"), "arm64")[0].text == "b #8"
