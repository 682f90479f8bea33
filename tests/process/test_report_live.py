"""The report of a real trial on the planted server, written live: annotated disassembly.

``tests/fixtures/planted.c`` is built -O2 -g (no frame pointers) and served; a real
trial cuts ``planted_cost`` (--return 0) with perf profiles, and the report is written
with a :class:`~knockout.listing.Disassembler` over the ELF file and the process's
description.  Checked against ground truth read independently: the build-id as
``readelf -n`` prints it, the cut's bytes at the function's entry, the source text of
planted.c, and the call of ``read`` in ``planted_cost`` carrying the samples through
it (planted_cost's loop spends its time in read(2)).

``KNOCKOUT_REPORT_SAMPLE=DIR`` also writes the report to DIR (docs/sample-report is
made so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from knockout.arch import host_arch
from knockout.cuts import Return
from knockout.elf import open_elf
from knockout.listing import Disassembler
from knockout.measure import CommandTime, perf_problem
from knockout.plan import plan_at
from knockout.report import write_report
from knockout.report.target import describe_process
from knockout.symbols import elf_symbols
from knockout.targets.process import ProcessTarget
from knockout.trial import TrialConfig, run_trial

SOURCE = Path(__file__).parents[1] / "fixtures" / "planted.c"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, int]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make setup installs it)")
    tmp = tmp_path_factory.mktemp("planted-report")
    binary, sock = tmp / "planted", tmp / "s.sock"
    subprocess.run(["gcc", "-O2", "-g", "-o", str(binary), str(SOURCE)], check=True)
    proc = subprocess.Popen([str(binary), "server", str(sock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield binary, sock, proc.pid
    proc.terminate()
    proc.wait(timeout=10)


def _readelf_build_id(binary: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(binary)], capture_output=True, text=True).stdout
    found = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert found, out
    return found[1]


def test_a_live_report_annotates_the_cut_function(
    planted: tuple[Path, Path, int], tmp_path: Path
) -> None:
    problem = perf_problem(system_wide=False)
    if problem is not None:
        pytest.fail(f"perf cannot profile here ({problem}); the report needs profiles")
    binary, sock, pid = planted
    target = ProcessTarget(pid)
    cut = plan_at(target, "planted_cost", Return(0))
    config = TrialConfig(windows=10, window=0.3, perf_pid=pid)
    result = run_trial(target, [cut], CommandTime(f"{binary} client {sock} 1"), config)
    doc = result.as_dict()
    listing = Disassembler(elf_symbols(str(binary)), open_elf(str(binary)).read, host_arch())
    out = tmp_path / "report"
    written = write_report(doc, out, disassembler=listing, target_info=describe_process(pid))
    if os.environ.get("KNOCKOUT_REPORT_SAMPLE"):
        write_report(
            doc,
            Path(os.environ["KNOCKOUT_REPORT_SAMPLE"]),
            disassembler=listing,
            target_info=describe_process(pid),
        )
    assert {p.name for p in written} >= {"report.md", "report.html", "report.json"}
    saved = json.loads((out / "report.json").read_text())
    info = saved["target_info"]
    assert info["pid"] == pid and info["exe"] == str(binary)
    assert info["cmdline"] == f"{binary} server {sock}"
    assert info["build_id"] == _readelf_build_id(binary)

    record = saved["disassembly"]
    assert record["function"] == "planted_cost" and record["note"] is None
    cut_lines = [line for line in record["listing"] if line.startswith("=>")]
    symbol = elf_symbols(str(binary)).lookup("planted_cost")
    entry = open_elf(str(binary)).read(symbol.address, len(cut.old))
    assert entry == cut.old  # the cut's bytes are the function's first bytes in the file
    assert cut_lines and f"{symbol.address:#018x} <planted_cost>:" in cut_lines[0]
    assert all("; cut --return 0" in line for line in cut_lines)
    # source lines interleaved: planted.c's own text of planted_cost's loop
    text = SOURCE.read_text()
    assert "read(zero_fd, buf, sizeof(buf))" in text
    assert any("read(zero_fd, buf, sizeof(buf))" in line for line in record["listing"])
    assert any(re.search(r"planted\.c:\d+$", line) for line in record["listing"])
    # the call of read carries the samples through it in the baseline, none under the cut
    calls = [m for m in record["marked"] if "call" in m["roles"] and "read" in m["text"]]
    assert len(calls) == 1, record["marked"]
    shares = calls[0]["calls"]
    assert shares["baseline"] > 0.5, (shares, result.heat)
    assert shares["cut"] is None or shares["cut"] < 0.2, shares
    md = (out / "report.md").read_text()
    assert "## Annotated disassembly: planted_cost" in md
    assert "calls " in md and "=> " in md
    assert _readelf_build_id(binary) in md
