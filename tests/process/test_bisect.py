"""Bisect on generated programs: the cost behind a branch in the middle of a long function.

Each program (tests/process/planted_chain.py ``branchy_source``, random names
and position) calls its costly function from one statement of a 40-step
function.  ``bisect`` probes "return at P" points and must name the region
holding that statement (its source lines), every time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from knockout.measure import CommandTime
from knockout.search.bisect import BisectConfig, bisect
from knockout.targets.process import ProcessTarget
from knockout.trial import TrialConfig
from tests.process.planted_chain import Branchy, branchy_source

CONFIG = BisectConfig(trial=TrialConfig(window=0.3, settle=0.05, profile=False))


@pytest.fixture(params=[3])  # more seeds: bench/search.py
def program(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Branchy, Path, Path, int]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make setup installs it)")
    branchy = branchy_source(int(request.param))
    source, binary, sock = tmp_path / "b.c", tmp_path / "b", tmp_path / "s.sock"
    source.write_text(branchy.source)
    subprocess.run(["gcc", "-O2", "-g", "-o", str(binary), str(source)], check=True)
    server = subprocess.Popen([str(binary), "server", str(sock)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    try:
        yield branchy, binary, sock, server.pid
    finally:
        server.kill()
        server.wait()


def test_bisect_names_the_region_of_the_costly_branch(
    program: tuple[Branchy, Path, Path, int],
) -> None:
    branchy, binary, sock, pid = program
    target = ProcessTarget(pid)
    result = bisect(target, branchy.function, CommandTime(f"{binary} client {sock} 10"), CONFIG)
    probes = [(p.point.location, p.trial.verdict if p.trial else None) for p in result.probes]
    lines = {int(where.rsplit(":", 1)[1]) for where in result.lines()}
    # the statement is `if (key == 'r') acc += costly(acc);` on two lines
    assert lines & {branchy.cost_line - 1, branchy.cost_line}, (result.conclusion(), probes)
    assert result.found is not None and result.found.confidence >= 0.99, probes
    doc = result.as_dict()
    assert doc["kind"] == "bisect" and doc["region"]["lines"] and doc["probes"]
    assert len(result.planned) > 40 and len(doc["probes"]) < len(result.planned) / 3
    for point in result.planned:  # every probe was reverted
        assert point.cut is not None
        assert target.read(point.cut.address, point.cut.size) == point.cut.old
