"""Reports rendered from saved real results (tests/fixtures/report/, recorded by record.py there).

Every trial fixture is the ``--save`` output of a real trial on the host's planted programs.
The climb and bisect documents below are ASSEMBLED from those real trials (the search does
not write its own yet): their frames and probes carry real trial documents, real uprobe
call counts (costs-planted.json), and a conclusion sentence written here, which the report
must copy, not compose.  Checked: every file is written, PNGs decode, SVGs parse as XML,
every link of report.md resolves, report.html passes html5lib's strict parser, and the
numbers shown equal the JSON's.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import html5lib
import pytest
from PIL import Image

from knockout.cli import main
from knockout.errors import BadInput, NotFound
from knockout.report import write_report
from knockout.report.flame import folded_counts, perf_diff
from knockout.report.load import load_document

FIXTURES = Path(__file__).parents[1] / "fixtures" / "report"
TRIALS = sorted(FIXTURES.glob("trial-*.json"))


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def _frame(symbol: str, depth: int, trial: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    cut = None
    if trial is not None:
        c = trial["cuts"][0]
        cut = {k: c[k] for k in ("location", "intent", "address", "old", "new")}
        cut["mechanism"] = trial["mechanisms"][0]
        cut["via"] = more.pop("via", "entry")
    return {
        "symbol": symbol,
        "depth": depth,
        "cut": cut,
        "refused": more.pop("refused", None),
        "verdict": trial["verdict"] if trial else None,
        "explained": trial.get("explained") if trial else None,
        "explained_ci": trial.get("explained_ci") if trial else None,
        "heat_moved_to": more.pop("heat_moved_to", []),
        "calls_per_s": more.pop("calls_per_s", None),
        "cost_per_call_s": more.pop("cost_per_call_s", None),
        "fanout": more.pop("fanout", {}),
        "trial": trial,
        **more,
    }


def assembled_climb() -> dict[str, Any]:
    """A climb ASSEMBLED from real trials of the planted server and its real call counts."""
    costs = _load("costs-planted.json")
    calls = {k: v / costs["seconds"] for k, v in costs["calls"].items()}
    cost = costs["cpu_seconds"] / costs["seconds"]
    readcall, cost_trial, handle = (
        _load("trial-planted-readcall.json"),
        _load("trial-planted-cost.json"),
        _load("trial-planted-handle.json"),
    )
    frames = [
        _frame("read_zero", 0, None, refused="kernel text: the host kernel cannot be cut"),
        _frame(
            "__GI___libc_read",
            1,
            readcall,
            via="call site in planted_cost",
            heat_moved_to=["__vdso_clock_gettime", "now"],
            calls_per_s=calls["__libc_read"],
        ),
        _frame(
            "planted_cost",
            2,
            cost_trial,
            calls_per_s=calls["planted_cost"],
            cost_per_call_s=cost / calls["planted_cost"],
            fanout={"__GI___libc_read": calls["__libc_read"] / calls["planted_cost"]},
        ),
        _frame(
            "handle",
            3,
            handle,
            calls_per_s=calls["handle"],
            cost_per_call_s=cost / calls["handle"],
            fanout={"planted_cost": calls["planted_cost"] / calls["handle"]},
        ),
    ]
    gone = [f for f in frames if f["verdict"] == "gone"]
    culprit = gone[0]["symbol"] if gone else None
    return {
        "kind": "climb",
        "target": handle["cuts"][0]["target"],
        "symptom": handle["symptom"],
        "unit": handle["unit"],
        "healthy": None,
        "healthy_source": "zero",
        "culprit": culprit,
        "conclusion": f"ASSEMBLED for the test: the culprit is {culprit}.",
        "stack": [{"symbol": f["symbol"], "total": 0.9, "self": 0.0} for f in frames],
        "frames": frames,
        "extra_key_the_renderer_must_tolerate": {"x": 1},
    }


def assembled_bisect() -> dict[str, Any]:
    """A bisect ASSEMBLED from two real trials of points in planted_cost."""
    probes = []
    for name in ("trial-planted-cost.json", "trial-planted-readcall.json"):
        t = _load(name)
        probes.append(
            {
                "point": t["cuts"][0]["location"],
                "address": t["cuts"][0]["address"],
                "verdict": t["verdict"],
                "explained": t["explained"],
                "confidence": 0.95,
                "trial": t,
            }
        )
    return {
        "kind": "bisect",
        "function": "planted_cost",
        "target": probes[0]["trial"]["cuts"][0]["target"],
        "symptom": probes[0]["trial"]["symptom"],
        "region": {
            "symbol": "planted_cost",
            "start": probes[0]["address"],
            "end": probes[1]["address"],
            "lines": ["planted.c:43", "planted.c:44"],
        },
        "probes": probes,
        "confidence": 0.9,
    }


def _written(doc: dict[str, Any], tmp_path: Path) -> tuple[Path, list[Path]]:
    out = tmp_path / "report"
    return out, write_report(doc, out)


def _check_files(out: Path, written: list[Path]) -> None:
    names = {p.name for p in written}
    assert {"report.md", "report.html", "report.json"} <= names
    assert sorted(p for p in out.iterdir()) == written  # every file written is listed
    for path in written:
        assert path.stat().st_size > 0, path
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
                assert im.format == "PNG" and im.width > 100 and im.height > 100
                colours = im.convert("RGB").getcolors(maxcolors=1 << 24) or []
                assert len(colours) > 8  # drawn, not blank
        elif path.suffix == ".svg":
            root = ET.parse(path).getroot()
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) > 3
        elif path.suffix == ".folded":
            for line in path.read_text().splitlines():
                stack, count = line.rsplit(" ", 1)
                assert stack and int(count) > 0


def _plain(md: str) -> str:
    """Markdown text without its backslash escapes."""
    return re.sub(r"\\(.)", r"\1", md)


def _links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", md)


def _check_links(out: Path) -> None:
    md = (out / "report.md").read_text()
    links = _links(md)
    assert links
    for link in links:
        assert (out / link).is_file(), link


def _check_html(out: Path) -> None:
    page = (out / "report.html").read_text()
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(page)  # raises ParseError on any HTML5 parse error
    assert page.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    assert page.count("<svg ") == len(list(out.glob("*.svg")))


def _table(md: str, first_header: str) -> list[list[str]]:
    """The rows of the markdown table whose header starts with ``first_header``."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {first_header} |"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]])
            return rows
    raise AssertionError(f"no table {first_header!r}")


def _number(text: str) -> float:
    """``0.02201s`` -> 0.02201, ``61.2%`` -> 0.612, ``+68.4`` -> 68.4."""
    match = re.match(r"[+-]?[0-9.]+(e[+-]?\d+)?", text.replace("\u2212", "-"))
    assert match, text
    value = float(match[0])
    return value / 100 if text.endswith("%") else value


def _close(shown: str, value: float, digits: int = 4) -> bool:
    """``shown`` is ``value`` rounded for display (4 significant digits or 0.1 points)."""
    number = _number(shown)
    if shown.endswith("%"):
        return abs(number - value) <= 0.0005 + 1e-12
    return math.isclose(number, value, rel_tol=10 ** -(digits - 1) / 2 + 1e-12, abs_tol=1e-15)


def _check_numbers(md: str, trial: dict[str, Any]) -> None:
    """The arms, explained share, p-values and profile shares shown equal the JSON's."""
    assert f"**Verdict: {trial['verdict']}.**" in md
    arms = {row[0]: row for row in _table(md, "arm")}
    for arm in ("baseline", "cut"):
        if trial.get(arm) is None:
            continue
        assert int(arms[arm][1]) == trial["windows_per_arm"][arm]
        if trial[arm]["median"] is not None and not math.isnan(trial[arm]["median"]):
            assert _close(arms[arm][2], trial[arm]["median"]), (arms[arm], trial[arm])
        ci = trial[arm]["ci"]
        if ci:
            low, high = arms[arm][3].strip("[]").split(", ")
            assert _close(low, ci[0]) and _close(high, ci[1])
    tests = {row[0]: row[1] for row in _table(md, "test")}
    for key, name in (("p_value", "deciding p"), ("p_reduced", "p(reduced)")):
        if trial.get(key) is not None:
            assert math.isclose(float(tests[name]), trial[key], rel_tol=5e-3), name
    if trial.get("explained") is not None:
        shown = re.search(r"\*\*Explained:\*\* (\S+) \\\[(\S+), (\S+)\\\]", md)
        assert shown, md
        assert _close(shown[1], trial["explained"])
        assert _close(shown[2], trial["explained_ci"][0])
        assert _close(shown[3], trial["explained_ci"][1])
    windows = _table(md, "#")
    assert [int(w[0]) for w in windows] == [w["index"] for w in trial["windows"]]
    assert [w[1] for w in windows] == [w["arm"] for w in trial["windows"]]
    for row, w in zip(windows, trial["windows"], strict=True):
        assert _close(row[3], w["value"])


def _check_profile(md: str, trial: dict[str, Any]) -> None:
    """The perf-diff table equals the trial's own profile_diff for the symbols it lists."""
    profiles = trial.get("profiles") or {}
    if not (profiles.get("baseline") or {}).get("folded"):
        return
    rows = {row[5].replace("\\_", "_"): row for row in _table(md, "Baseline")}
    saved = {h["symbol"]: h for h in trial["profile_diff"]}
    compared = 0
    for symbol, h in saved.items():
        if symbol not in rows:
            continue
        row = rows[symbol]
        assert _close(row[0], h["baseline"]) and _close(row[2], h["cut"]), (row, h)
        assert _close(row[3], h["baseline_total"]) and _close(row[4], h["cut_total"]), (row, h)
        compared += 1
    assert compared >= min(3, len(saved))


@pytest.mark.parametrize("path", TRIALS, ids=[p.stem for p in TRIALS])
def test_the_report_of_a_saved_trial(path: Path, tmp_path: Path) -> None:
    trial = json.loads(path.read_text())
    out, written = _written(trial, tmp_path)
    _check_files(out, written)
    _check_links(out)
    _check_html(out)
    md = (out / "report.md").read_text()
    _check_numbers(md, trial)
    _check_profile(md, trial)
    assert json.loads((out / "report.json").read_text()) == trial  # nothing added, nothing lost
    if trial["breaks"]:
        assert trial["breaks"][0] in _plain(md)
    assert "rendered from saved JSON alone" in md


def test_perf_diff_shares_are_the_profiles_own() -> None:
    """The folded stacks give back exactly the shares the trial computed from its samples."""
    trial = _load("trial-planted-readcall.json")
    base, cut = trial["profiles"]["baseline"], trial["profiles"]["cut"]
    assert sum(folded_counts(base).values()) == base["busy"]  # no stack was truncated
    rows = {r.symbol: r for r in perf_diff(base, cut, top=1000)}
    for h in trial["profile_diff"]:
        r = rows[h["symbol"]]
        assert math.isclose(r.baseline, h["baseline"]) and math.isclose(r.cut, h["cut"])
        assert math.isclose(r.baseline_total, h["baseline_total"])
        assert math.isclose(r.cut_total, h["cut_total"])


def test_the_report_of_an_assembled_climb(tmp_path: Path) -> None:
    doc = assembled_climb()
    out, written = _written(doc, tmp_path)
    _check_files(out, written)
    _check_links(out)
    _check_html(out)
    md = (out / "report.md").read_text()
    assert doc["conclusion"] in _plain(md)  # the document's sentence, verbatim
    frames = _table(md, "depth")
    assert [f[1].replace("\\_", "_") for f in frames] == [f["symbol"] for f in doc["frames"]]
    assert frames[0][2].startswith("refused: kernel text")
    for row, f in zip(frames, doc["frames"], strict=True):
        assert row[3] == (f["verdict"] or "refused")
        if f["explained"] is not None:
            assert _close(row[4].split()[0], f["explained"])
    costs = {r[0].replace("\\_", "_"): r for r in _table(md, "frame")}
    for f in doc["frames"]:
        row = costs[f["symbol"]]
        if f["calls_per_s"] is not None:
            assert _close(row[1], f["calls_per_s"])
        if f["cost_per_call_s"] is not None:
            assert _close(row[2], f["cost_per_call_s"])
        for callee, n in f["fanout"].items():
            assert f"{callee} x{n:.4g}" in row[3].replace("\\_", "_")
    assert (out / "climb-explained.png").is_file()
    for i, f in enumerate(doc["frames"]):
        if f["trial"] is not None:
            assert (out / f"frame-{i}-{f['symbol']}-windows.png").is_file()
            assert f"## Trial of frame {i}: {f['symbol']}" in md


def test_the_report_of_an_assembled_bisect(tmp_path: Path) -> None:
    doc = assembled_bisect()
    out, written = _written(doc, tmp_path)
    _check_files(out, written)
    _check_links(out)
    _check_html(out)
    md = (out / "report.md").read_text()
    probes = _table(md, "#")  # the first table headed '#' is the probes'
    assert [p[1] for p in probes] == [p["point"] for p in doc["probes"]]
    assert [p[3] for p in probes] == [p["verdict"] for p in doc["probes"]]
    for row, p in zip(probes, doc["probes"], strict=True):
        assert _close(row[4], p["explained"])
    assert "planted.c:43" in md and "bisect-explained.png" in _links(md)


def test_knockout_report_re_renders_the_same_report(tmp_path: Path) -> None:
    """From a saved trial, then again from the report directory: the same report.md."""
    first = tmp_path / "first"
    assert main(["report", str(FIXTURES / "trial-planted-handle.json"), "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["report", str(first), "--out", str(again)]) == 0
    assert (first / "report.md").read_text() == (again / "report.md").read_text()
    assert main(["report", str(first)]) == 0  # in place


def test_bad_inputs_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(BadInput, match="not a knockout result"):
        load_document(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"a": 1}')
    with pytest.raises(BadInput, match="save one with --save"):
        load_document(tmp_path / "y.json")
    with pytest.raises(NotFound, match=r"holds no report\.json"):
        load_document(tmp_path)
    (tmp_path / "z.json").write_text("{")
    with pytest.raises(BadInput, match="is not JSON"):
        load_document(tmp_path / "z.json")


def test_help_does_not_import_matplotlib() -> None:
    for argv in (["--help"], ["report", "--help"]):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "knockout", *argv],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "report" in out.stdout
        imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()}
        assert not {m for m in imported if m.startswith(("matplotlib", "PIL"))}, argv
