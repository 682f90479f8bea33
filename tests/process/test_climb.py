"""The climb on generated programs: it names the planted culprit, not a leaf below it.

Each program (tests/process/planted_chain.py, random names, 3-8 frames) has
one culprit frame that loops until the frames below it report progress:
cutting any of them only moves the heat into the culprit.  The climb
profiles the running server (driven by a client), cuts frames from the
leaf up and judges each cut on a client's wall time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import html5lib
import pytest

from knockout.listing import Disassembler
from knockout.measure import CommandTime, perf_problem
from knockout.report import write_report
from knockout.report.target import describe_process
from knockout.search.climb import ClimbConfig, climb
from knockout.targets.process import ProcessTarget
from knockout.trial import TrialConfig
from tests.process.planted_chain import Chain, chain_source

CONFIG = ClimbConfig(
    trial=TrialConfig(window=0.3, profile=True, settle=0.05),
    profile_seconds=2.0,
)


@pytest.fixture(params=[11])  # more seeds: bench/search.py
def program(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Chain, Path, Path, int]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make setup installs it)")
    if perf_problem(system_wide=False) is not None:
        pytest.fail(f"the climb needs perf: {perf_problem(system_wide=False)}")
    chain = chain_source(int(request.param))
    source, binary, sock = tmp_path / "chain.c", tmp_path / "chain", tmp_path / "s.sock"
    source.write_text(chain.source)
    subprocess.run(["gcc", "-O2", "-g", "-o", str(binary), str(source)], check=True)
    server = subprocess.Popen([str(binary), "server", str(sock)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    hammer = subprocess.Popen([str(binary), "hammer", str(sock), "20"])
    try:
        yield chain, binary, sock, server.pid
    finally:
        hammer.kill()
        server.kill()
        hammer.wait()
        server.wait()


def test_climb_names_the_culprit_frame(
    program: tuple[Chain, Path, Path, int], tmp_path: Path
) -> None:
    chain, binary, sock, pid = program
    report_dir = tmp_path / "report"
    target = ProcessTarget(pid)
    symptom = CommandTime(f"{binary} client {sock} 10")
    result = climb(target, symptom, CONFIG)
    lines = "\n".join(f.line() for f in result.frames)
    assert result.culprit is not None, f"{result.conclusion()}\n{lines}"
    assert result.culprit.frame.symbol == chain.culprit, lines
    # the frames below the culprit were judged and did not remove the symptom
    below = chain.names[chain.names.index(chain.culprit) + 1 :]
    judged = {f.frame.symbol: f for f in result.frames if f.trial is not None}
    for name in below:
        assert name in judged and judged[name].verdict != "gone", lines
    assert chain.culprit in result.conclusion()
    # the cost split: the culprit calls the frame below UNITS (24) times per call of its own
    culprit = result.culprit
    below_name = chain.names[chain.names.index(chain.culprit) + 1]
    assert culprit.calls_per_s and culprit.calls_per_s > 0, culprit.count_note
    assert 23 < culprit.fanout[below_name] < 25, culprit.fanout
    assert culprit.cost_per_call_s is not None and culprit.cost_per_call_s > 0
    doc = result.as_dict()
    assert doc["culprit"] == chain.culprit and doc["frames"][0]["depth"] == 0
    # the report of this real climb: every file, the HTML parses, the numbers are the JSON's
    written = write_report(
        doc,
        report_dir,
        disassembler=Disassembler(target.symbols(), target.read, target.arch),
        target_info=describe_process(pid),
    )
    names = {p.name for p in written}
    assert {"report.md", "report.html", "report.json"} <= names
    html5lib.HTMLParser(strict=True).parse((report_dir / "report.html").read_text())
    md = (report_dir / "report.md").read_text().replace("\\", "")  # markdown escapes
    assert chain.culprit in md and doc["conclusion"] in md
    assert f"{culprit.explained:.0%}" in md
