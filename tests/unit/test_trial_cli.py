"""``knockout trial`` end to end over a fake target whose state a metric command reads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from rich.console import Console

from knockout import cli
from knockout.commands import trial as trial_cmd
from knockout.cuts import Cut, Intent, SetReg, Skip
from knockout.errors import BadInput
from knockout.measure.perf import Sample
from knockout.measure.profile import describe_heat, heat_diff, profile_of
from knockout.report.text import render_trial
from knockout.spelling import parse_duration, parse_fraction
from knockout.stats import Design, judge
from knockout.targets import AppliedCut, Target
from knockout.trial import TrialResult
from tests.unit.test_trial_run import FakeTarget, make_cut


class FileTarget(FakeTarget):
    """A fake target whose 'symptom' is a number in a file: 10 normally, 4 with any cut."""

    def __init__(self, state: Path) -> None:
        super().__init__()
        self.state = state
        self.state.write_text("10\n")

    def apply(self, cut: Cut) -> AppliedCut:
        applied = super().apply(cut)
        self.state.write_text("10\n" if cut.new == cut.old else "4\n")
        return applied

    def revert(self, applied: AppliedCut) -> None:
        super().revert(applied)
        self.state.write_text("10\n")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FileTarget:
    target = FileTarget(tmp_path / "state")
    monkeypatch.setattr(trial_cmd, "open_target", lambda args: target)
    planned: dict[str, int] = {}

    def plan(t: Target, spec: str, intent: Intent) -> Cut:
        address = planned.setdefault(spec, 4 * len(planned))
        return make_cut(spec, address, intent)

    monkeypatch.setattr("knockout.plan.plan_at", plan)
    return target


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["trial", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_verdict_gone(fake: FileTarget, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "f",
        "--return",
        "0",
        "--pid",
        "1",
        "--symptom",
        f"metric:'cat {fake.state}'",
        "--healthy",
        "4",
        "--window",
        "1ms",
        "--no-profile",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "gone"
    assert doc["effect"] == pytest.approx(-0.6)
    assert doc["explained"] == pytest.approx(1.0) and doc["healthy"] == 4.0
    assert doc["baseline"]["median"] == 10 and doc["cut"]["median"] == 4
    assert doc["cuts"][0]["intent"] == "--return 0"
    assert fake.mem == FakeTarget().mem and fake.state.read_text() == "10\n"


def test_without_healthy_the_same_cut_is_reduced_by_its_share(
    fake: FileTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    """10 -> 4 against a healthy zero: 60% of the symptom is explained, not all of it."""
    code, out, _ = _run(
        capsys,
        "f",
        "--return",
        "0",
        "--pid",
        "1",
        "--symptom",
        f"metric:cat {fake.state}",
        "--window",
        "1ms",
        "--no-profile",
    )
    assert code == 0
    assert "reduced" in out and "explained 60% of the excess over healthy 0" in out, out


def test_higher_is_better_reads_the_drop_as_persisting(
    fake: FileTarget, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    saved = tmp_path / "out.json"
    code, out, _ = _run(
        capsys,
        "f",
        "--skip",
        "--pid",
        "1",
        "--symptom",
        f"metric:cat {fake.state}",
        "--higher-is-better",
        "--window",
        "1ms",
        "--no-profile",
        "--save",
        str(saved),
    )
    assert code == 0
    assert "persists" in out and "baseline" in out
    assert json.loads(saved.read_text())["verdict"] == "persists"


def test_aa_and_extra_cuts(fake: FileTarget, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "f",
        "g",
        "--aa",
        "--cut",
        "h --set x28=0",
        "--pid",
        "1",
        "--symptom",
        f"metric:cat {fake.state}",
        "--healthy",
        "4",
        "--window",
        "1ms",
        "--no-profile",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert [c["intent"] for c in doc["cuts"]] == ["--aa", "--aa", "--set x28=0"]
    assert doc["verdict"] == "gone"  # the real cut h in the set makes it a real trial


def test_bad_options_exit_2_with_one_line(
    fake: FileTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "f", "--skip", "--pid", "1", "--symptom", "cpu")
    assert code == 2 and err.count("\n") == 1 and "use sys, load" in err
    code, _, err = _run(capsys, "f", "--skip", "--pid", "1", "--symptom", "sys", "--windows", "3")
    assert code == 2 and "--windows 5" in err
    assert fake.events == []  # refused before cutting


def test_extra_cut_parser() -> None:
    assert trial_cmd._extra_cut("f+0x10 --skip") == ("f+0x10", Skip())
    assert trial_cmd._extra_cut("'f' --set x28=0") == ("f", SetReg("x28", 0))
    with pytest.raises(BadInput, match="--cut takes"):
        trial_cmd._extra_cut("--skip")


@pytest.mark.parametrize(
    ("text", "seconds"), [("5s", 5.0), ("500ms", 0.5), ("0.3", 0.3), ("1m", 60.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_values() -> None:
    with pytest.raises(BadInput, match="duration"):
        parse_duration("soon")
    assert parse_fraction("10%") == pytest.approx(0.1)
    assert parse_fraction("0.25") == 0.25
    with pytest.raises(BadInput, match="out of range"):
        parse_fraction("150%")


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trial_cmd.register(parser.add_subparsers())
    return parser.parse_args(["trial", "f", "--skip", "--symptom", "sys", *argv])


def test_config_from_args_profiles_the_process_with_its_pid() -> None:
    args = _parsed(
        "--windows",
        "8",
        "--window",
        "300ms",
        "--alpha",
        "0.05",
        "--min-effect",
        "20%",
        "--no-warmup",
        "--pid",
        "42",
    )
    config = trial_cmd.config_from_args(args, "%")
    assert (config.windows, config.window, config.alpha, config.min_effect) == (8, 0.3, 0.05, 0.2)
    assert config.perf_pid == 42 and not config.warmup
    assert config.healthy is None and config.settle is None and config.settle_seconds == 0.06


def test_breaks_and_judging_options() -> None:
    args = _parsed(
        "--pid",
        "1",
        "--healthy",
        "15%",
        "--gone-at",
        "90%",
        "--settle",
        "0",
        "--guard",
        "true",
        "--guard",
        "test -e /",
        "--cgroup",
        "/sys/fs/cgroup/pod",
        "--work",
        "metric:'cat rate'",
    )
    config = trial_cmd.config_from_args(args, "%")
    assert (config.healthy, config.gone_at, config.settle) == (15.0, 0.9, 0.0)
    assert config.guards == ("true", "test -e /") and config.cgroup == "/sys/fs/cgroup/pod"
    assert config.work == "metric:'cat rate'"
    with pytest.raises(BadInput, match="measured in s, not %"):
        trial_cmd.parse_healthy("15%", "s")
    with pytest.raises(BadInput, match="--gone-at 120% is out of range"):
        trial_cmd.config_from_args(_parsed("--pid", "1", "--gone-at", "120%"), "%")


def test_report_prints_bracketed_symbols_and_commands_verbatim() -> None:
    """Rich markup must not eat ``[kernel.kallsyms]``-style names or commands with brackets."""
    base = profile_of([Sample("a", 1, 1, 0.0, ("[kernel.kallsyms]",))] * 90)
    cut = profile_of([Sample("a", 1, 1, 0.0, ("[vdso]",))] * 90)
    design = Design(max_per_arm=6)
    result = TrialResult([make_cut()], "cmd:'[ -e x ] || true'", "s", design)
    result.judgement = judge([1.0] * 6, [0.5] * 6, design)
    result.profile_diff = heat_diff(base, cut)
    result.heat = describe_heat(result.profile_diff, "gone", busy=(90, 90))
    console = Console(record=True, width=200)
    render_trial(console, result)
    text = console.export_text()
    assert "[kernel.kallsyms]" in text and "[vdso]" in text
    assert "cmd:'[ -e x ] || true'" in text


def test_the_cli_default_windows_is_the_statistics_default() -> None:
    from knockout import stats

    assert trial_cmd.DEFAULT_WINDOWS == stats.DEFAULT_WINDOWS


def test_a_remedy_is_judged_like_a_cut_and_its_file_restored(
    fake: FileTarget, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--write alone: the file holds 4 in the cut windows, 10 again after."""
    setting = tmp_path / "setting"
    setting.write_text("10\n")
    code, out, _ = _run(
        capsys,
        "--write",
        f"{setting}=4",
        "--pid",
        "1",
        "--symptom",
        f"metric:cat {setting}",
        "--healthy",
        "4",
        "--window",
        "1ms",
        "--no-profile",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "gone" and doc["cuts"] == []
    assert doc["writes"] == [{"path": str(setting), "value": "4"}] and doc["mechanisms"] == [
        "write"
    ]
    assert setting.read_text().strip() == "10" and fake.events == [("close", "")]  # no cut


def test_write_needs_an_existing_file(fake: FileTarget, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--write", "/nonexistent/x=1", "--pid", "1", "--symptom", "sys")
    assert code == 2 and err.count("\n") == 1 and "no such file" in err
    code, _, err = _run(capsys, "--return", "0", "--pid", "1", "--symptom", "sys")
    assert code == 2 and "needs a SPEC" in err
