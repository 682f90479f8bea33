"""The five verdicts on real programs, each checked against a figure measured independently.

``tests/fixtures/shares.c`` serves requests whose cost is two equal halves;
the same program built ``-DNO_HALF`` (without one half) and ``-DNO_COST``
(without either) measures, independently of any cut, what a cut of the
half should explain.  The symptom is the request rate (``metric:``, higher
is better) or a client's wall time.  The host has 2 CPUs shared with other
work: windows are short and judged as the trial judges them; nothing
asserts a timing.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from knockout.cuts import Cut, Identity, Intent, Return
from knockout.measure import CommandTime, Metric, Symptom
from knockout.plan import plan_at
from knockout.targets.process import ProcessTarget
from knockout.trial import TrialConfig, TrialResult, run_trial

SOURCE = Path(__file__).parents[1] / "fixtures" / "shares.c"
#: short windows, no perf, at most 20 per arm
CONFIG = TrialConfig(windows=20, window=0.4, profile=False, settle=0.05)


@dataclass
class Server:
    binary: Path
    sock: Path
    proc: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, mode: str, arg: str) -> str:
        return f"{self.binary} {mode} {self.sock} {arg}"

    def rate(self, seconds: float = 0.4) -> float:
        out = subprocess.run(
            self.client("rate", str(seconds)).split(), capture_output=True, text=True, check=True
        )
        return float(out.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """shares.c three ways: as it is, without half its cost, without its cost."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make setup installs it)")
    tmp = tmp_path_factory.mktemp("shares")
    out = {}
    for name, flags in (("full", []), ("no_half", ["-DNO_HALF"]), ("no_cost", ["-DNO_COST"])):
        out[name] = tmp / name
        subprocess.run(["gcc", "-O2", "-g", *flags, "-o", str(out[name]), str(SOURCE)], check=True)
    return out


def _serve(binary: Path, tmp: Path) -> Server:
    sock = tmp / f"{binary.name}.sock"
    proc = subprocess.Popen([str(binary), "server", str(sock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return Server(binary, sock, proc)


@pytest.fixture
def servers(builds: dict[str, Path], tmp_path: Path) -> Iterator[dict[str, Server]]:
    running = {name: _serve(path, tmp_path) for name, path in builds.items()}
    yield running
    for s in running.values():
        s.stop()


def _independent_rates(servers: dict[str, Server], rounds: int = 7) -> dict[str, float]:
    """Median request rate of each build, measured in interleaved rounds (drift cancels)."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, s in servers.items():
            rates[name].append(s.rate())
    return {name: statistics.median(values) for name, values in rates.items()}


def _trial(
    server: Server, spec: str, intent: Intent, symptom: Symptom, config: TrialConfig
) -> tuple[TrialResult, Cut]:
    target = ProcessTarget(server.pid)
    planned = plan_at(target, spec, intent)
    result = run_trial(target, [planned], symptom, config)
    if target.alive():
        assert target.read(planned.address, planned.size) == planned.old  # reverted
    return result, planned


def _why(result: TrialResult) -> str:
    values = ", ".join(f"{w.arm[0]}={w.value:.4g}" for w in result.windows)
    return f"{result.verdict}: {result.reason}; notes: {result.notes}; windows: {values}"


def test_half_the_cost_is_reduced_with_the_share_measured_without_it(
    servers: dict[str, Server],
) -> None:
    full = servers["full"]
    rate = Metric(full.client("rate", "0.3"), higher_is_better=True)
    result, _ = _trial(full, "half_cost", Return(1), rate, CONFIG)
    rates = _independent_rates(servers)
    # against zero time per request: explained = 1 - rate_with_cost / rate_without_half
    independent = 1 - rates["full"] / rates["no_half"]
    assert result.verdict == "reduced", _why(result)
    assert result.judgement is not None
    assert abs(result.judgement.explained - independent) <= 0.10, (independent, _why(result))


def test_half_the_cost_stays_reduced_against_the_healthy_rate(
    servers: dict[str, Server],
) -> None:
    full = servers["full"]
    rates = _independent_rates(servers)
    rate = Metric(full.client("rate", "0.3"), higher_is_better=True)
    config = replace(CONFIG, healthy=rates["no_cost"])
    result, _ = _trial(full, "half_cost", Return(1), rate, config)
    cost = {name: 1 / r for name, r in rates.items()}  # time per request
    independent = (cost["full"] - cost["no_half"]) / (cost["full"] - cost["no_cost"])
    assert result.verdict == "reduced", _why(result)
    assert result.judgement is not None and result.judgement.healthy == rates["no_cost"]
    assert abs(result.judgement.explained - independent) <= 0.10, (independent, _why(result))


def test_removing_the_whole_cost_is_gone(servers: dict[str, Server]) -> None:
    full = servers["full"]
    rate = Metric(full.client("rate", "0.3"), higher_is_better=True)
    result, _ = _trial(full, "handle", Return(ord("k")), rate, CONFIG)
    assert result.verdict == "gone", _why(result)
    assert result.judgement is not None and result.judgement.explained >= 0.9


def test_a_cut_that_crashes_the_target_breaks_and_names_the_signal(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    server = _serve(builds["full"], tmp_path)
    try:
        symptom = CommandTime(server.client("client", "2"))
        result, _ = _trial(server, "lookup", Return(0), symptom, CONFIG)
    finally:
        server.stop()
    assert result.verdict == "breaks", _why(result)
    assert "died" in result.reason and "SIGSEGV" in result.reason, result.reason
    assert result.judgement is not None and result.judgement.verdict != "breaks"


def test_a_cut_that_stalls_the_work_breaks_through_the_work_rate(
    servers: dict[str, Server],
) -> None:
    full = servers["full"]
    symptom = CommandTime(full.client("client", "3"))  # refused requests are quick: "better"
    config = replace(CONFIG, work=f"metric:{full.client('rate', '0.3')}")
    result, _ = _trial(full, "release_slot", Return(1), symptom, config)
    assert result.verdict == "breaks", _why(result)
    assert "work stalled" in result.reason or "work rate fell" in result.reason, result.reason
    # stopped within the first cut pair (the first request under the cut still completes)
    assert len(result.values("cut")) <= 2


def test_aa_is_never_an_effect(servers: dict[str, Server]) -> None:
    full = servers["full"]
    rate = Metric(full.client("rate", "0.3"), higher_is_better=True)
    config = replace(CONFIG, work=f"metric:{full.client('rate', '0.1')}")
    result, planned = _trial(full, "half_cost", Identity(), rate, config)
    assert planned.new == planned.old and result.mechanisms == ["ptrace"]
    assert result.verdict in ("persists", "inconclusive"), _why(result)
