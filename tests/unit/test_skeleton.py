import pytest

from knockout.arch import get_arch
from knockout.cli import main
from knockout.errors import BadInput
from knockout.spelling import parse_hex, parse_int


def test_arch_aliases() -> None:
    assert get_arch("amd64") is get_arch("x86_64")
    assert get_arch("ARM64").name == "aarch64"
    with pytest.raises(BadInput, match="use one of"):
        get_arch("mips")


def test_parse_hex_and_int() -> None:
    assert parse_hex("d2 80 00 1c") == bytes.fromhex("d280001c")
    assert parse_int("0x10") == 16
    with pytest.raises(BadInput, match="even number of hex digits"):
        parse_hex("abc")
    with pytest.raises(BadInput, match="not an integer"):
        parse_int("zero")


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_a_command_imports_only_what_it_uses() -> None:
    """A cold ``knockout disasm`` must not load the trial, report or guest machinery (issue 8)."""
    import subprocess
    import sys

    probe = (
        "import sys; from knockout.cli import main; "
        "main(['disasm', '--arch', 'x86_64', '--hex', '90']); "
        "print(' '.join(m for m in sys.modules if m.startswith('knockout')))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert "knockout.commands.disasm" in loaded
    heavy = {"knockout.trial", "knockout.vm", "knockout.report", "knockout.commands.trial"}
    assert not heavy & loaded, sorted(heavy & loaded)
