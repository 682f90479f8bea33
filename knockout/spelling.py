"""How knockout spells numbers, bytes, durations and fractions on its command line and in files.

Each parser returns the value or raises one :class:`~knockout.errors.BadInput`
line saying how to write it.

>>> parse_int("0x1f"), parse_hex("d2 80 00 1c").hex()
(31, 'd280001c')
>>> parse_duration("500ms"), parse_fraction("10%")
(0.5, 0.1)
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from knockout.errors import BadInput

if TYPE_CHECKING:
    from knockout.cuts import Intent

__all__ = [
    "INTENT_SPELLINGS",
    "parse_duration",
    "parse_fraction",
    "parse_hex",
    "parse_int",
    "parse_intent",
    "parse_words",
]

#: how each intent is written (the options of ``knockout cut``), for messages
INTENT_SPELLINGS = (
    "--return V",
    "--return-at [V]",
    "--set REG=V",
    "--skip",
    "--skip-call [V]",
    "--force-branch taken|not-taken",
    "--bytes HEX",
    "--aa",
)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_int(text: str) -> int:
    """``0``, ``-1``, ``0x1f``, ``0b101`` ... -> int."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise BadInput(f"{text!r} is not an integer; write e.g. 0, -1 or 0x1f") from None


def parse_hex(text: str) -> bytes:
    """``'d2 80 00 1c'`` / ``'d280001c'`` / ``'\\xd2\\x80'`` -> bytes."""
    cleaned = re.sub(r"(\\x|0x|[\s,:])", "", text)
    if not cleaned or len(cleaned) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", cleaned):
        raise BadInput(
            f"{text!r} is not hex bytes; write an even number of hex digits, e.g. 31c0c3"
        )
    return bytes.fromhex(cleaned)


def parse_duration(text: str) -> float:
    """``5s``, ``500ms``, ``0.5``, ``1m`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*", text)
    if not m or float(m[1]) <= 0:
        raise BadInput(f"{text!r} is not a duration; write e.g. 5s, 500ms or 1m")
    return float(m[1]) * _UNITS[m[2] or "s"]


def parse_fraction(text: str, option: str = "--min-effect", *, allow_one: bool = False) -> float:
    """``10%`` or ``0.1`` -> 0.1 (strictly between 0 and 1; up to 1 with ``allow_one``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*", text)
    if not m:
        raise BadInput(f"{text!r} is not a fraction; write e.g. {option} 10% or 0.1")
    value = float(m[1]) / (100 if m[2] else 1)
    if not (0 < value <= 1 if allow_one else 0 < value < 1):
        raise BadInput(f"{option} {text} is out of range; write e.g. 10%")
    return value


def _one_value(option: str, words: list[str], *, optional: bool = False) -> str | None:
    if not words and optional:
        return None
    if len(words) != 1:
        wanted = "at most one value" if optional else "one value"
        raise BadInput(f"{option} takes {wanted}; got {' '.join(words) or 'none'}")
    return words[0]


def parse_intent(text: str) -> Intent:
    """An intent as the command line spells it: ``--set x28=0``, ``--return 0``, ``--skip`` ...

    >>> parse_intent("--set x28=0"), parse_intent("--skip-call")
    (SetReg(reg='x28', value=0), SkipCall(value=None))
    >>> parse_intent("--force-branch not-taken"), parse_intent("--return-at -1")
    (ForceBranch(taken=False), ReturnAt(value=-1, epilogue=None, pop=0, replay=()))
    """
    from knockout.cuts import (
        ForceBranch,
        Identity,
        RawBytes,
        Return,
        ReturnAt,
        SetReg,
        Skip,
        SkipCall,
    )

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BadInput(f"cannot read the intent {text!r} ({exc}); write e.g. --set x28=0") from None
    if not words:
        raise BadInput(f"no intent given; write one of: {', '.join(INTENT_SPELLINGS)}")
    option, rest = words[0], words[1:]
    if "=" in option and option.startswith("--"):  # --set=x28=0, --return=0
        option, _, value = option.partition("=")
        rest = [value, *rest]
    if option == "--return":
        return Return(parse_int(_one_value(option, rest) or ""))
    if option == "--return-at":
        at = _one_value(option, rest, optional=True)
        return ReturnAt(None if at is None else parse_int(at))
    if option == "--set":
        reg, sep, number = (_one_value(option, rest) or "").partition("=")
        if not sep or not reg.strip():
            raise BadInput(f"--set takes REG=VALUE, e.g. --set x28=0; got {text!r}")
        return SetReg(reg.strip().lower(), parse_int(number))
    if option == "--skip-call":
        result = _one_value(option, rest, optional=True)
        return SkipCall(None if result is None else parse_int(result))
    if option == "--force-branch":
        way = (_one_value(option, rest) or "").lower()
        if way not in ("taken", "not-taken"):
            raise BadInput(f"--force-branch takes taken or not-taken; got {way!r}")
        return ForceBranch(taken=way == "taken")
    if option == "--bytes":
        return RawBytes(parse_hex(" ".join(rest)))
    if option in ("--skip", "--aa"):
        if rest:
            raise BadInput(f"{option} takes no value; got {' '.join(rest)}")
        return Skip() if option == "--skip" else Identity()
    raise BadInput(f"unknown intent {text!r}; write one of: {', '.join(INTENT_SPELLINGS)}")


def parse_words(text: str) -> list[int]:
    """``0xd280001c,0xd65f03c0`` (commas or spaces; ``0x`` optional) -> the instruction words.

    >>> [hex(w) for w in parse_words("0xd280001c, d65f03c0")]
    ['0xd280001c', '0xd65f03c0']
    """
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    try:
        words = [int(p, 16) for p in parts]
    except ValueError:
        raise BadInput(
            f"{text!r} is not instruction words; write hex words, "
            "e.g. --words 0xd280001c,0xd65f03c0"
        ) from None
    if not words:
        raise BadInput("--words needs at least one word, e.g. --words 0xd280001c")
    return words
