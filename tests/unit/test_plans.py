"""The user's own points: intents spelled as on the command line, --points, TOML plan files."""

from __future__ import annotations

from pathlib import Path

import pytest

from knockout.cuts import (
    ForceBranch,
    Identity,
    Intent,
    RawBytes,
    Return,
    ReturnAt,
    SetReg,
    Skip,
    SkipCall,
    describe_intent,
)
from knockout.errors import BadInput, NotFound
from knockout.plans import Point, load_plan, parse_plan, parse_points
from knockout.spelling import parse_intent

EVERY_INTENT: list[Intent] = [
    Return(0),
    Return(-1),
    ReturnAt(None),
    ReturnAt(7),
    SetReg("x28", 0),
    SetReg("eax", 0x10),
    Skip(),
    SkipCall(),
    SkipCall(5),
    ForceBranch(True),
    ForceBranch(False),
    RawBytes(bytes.fromhex("90c3")),
    Identity(),
]


@pytest.mark.parametrize("intent", EVERY_INTENT, ids=describe_intent)
def test_every_spelling_reads_back(intent: Intent) -> None:
    """describe_intent writes what parse_intent reads (ReturnAt's epilogue is chosen later)."""
    assert parse_intent(describe_intent(intent)) == intent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no intent given; write one of: --return V"),
        ("--set x28", "--set takes REG=VALUE"),
        ("--return", "--return takes one value; got none"),
        ("--skip 3", "--skip takes no value"),
        ("--force-branch maybe", "--force-branch takes taken or not-taken"),
        ("--skip-call 1 2", "--skip-call takes at most one value"),
        ("--bytes zz", "is not hex bytes"),
        ("--jump 4", "unknown intent '--jump 4'"),
        ("--return 'x", "cannot read the intent"),
    ],
)
def test_bad_spellings_say_how_to_write_them(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        parse_intent(text)
    assert "\n" not in str(exc.value)


def test_equals_spelling() -> None:
    assert parse_intent("--set=x28=0") == SetReg("x28", 0)
    assert parse_intent("--return=0x10") == Return(16)


def test_points() -> None:
    points = parse_points(
        "shrink_slab+0x150 --set x28=0, mm/vmscan.c:431,0xffffffff81000000 --skip"
    )
    assert points == [
        Point("shrink_slab+0x150", SetReg("x28", 0)),
        Point("mm/vmscan.c:431", None),
        Point("0xffffffff81000000", Skip()),
    ]
    with pytest.raises(BadInput, match=r"--points item 2: empty point"):
        parse_points("f,,g")
    with pytest.raises(BadInput, match="starts with an intent; write the spec first"):
        parse_points("--skip f+0x10")


PLAN = """
# the seed's cuts, by name
[[cut]]
name = "info NULL"
spec = "shrink_slab+0x150"
intent = "--set x28=0"

[[cut]]
name = "online false"
spec = "shrink_slab+0x128"
intent = "--set w0=0"

[[cut]]
spec = "do_shrink_slab"
intent = "--return 0"

[[cut]]
spec = "shrink_slab+0x40"
"""


def test_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(PLAN)
    assert load_plan(path) == [
        Point("shrink_slab+0x150", SetReg("x28", 0), "info NULL"),
        Point("shrink_slab+0x128", SetReg("w0", 0), "online false"),
        Point("do_shrink_slab", Return(0), "do_shrink_slab"),
        Point("shrink_slab+0x40", None, "shrink_slab+0x40"),
    ]
    with pytest.raises(NotFound, match="no such plan file"):
        load_plan(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[cut]\n", "not TOML"),
        ("[cuts]\nspec = 'f'\n", "unknown table 'cuts'"),
        ("", "no \\[\\[cut\\]\\] tables"),
        ("[[cut]]\nname = 'x'\n", "cut 1 has no spec"),
        ("[[cut]]\nspec = 'f'\nwhy = 'x'\n", "unknown key 'why'"),
        ("[[cut]]\nspec = 'f'\nintent = 3\n", "intent must be a string"),
        ("[[cut]]\nspec = 'f'\nintent = '--set x'\n", r"plan: cut 1 \(f\): --set takes REG=VALUE"),
    ],
)
def test_plan_errors_name_the_cut(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as exc:
        parse_plan(text)
    assert "\n" not in str(exc.value)
