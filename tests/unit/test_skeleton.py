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
