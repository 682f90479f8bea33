"""``knockout cut/list/revert --pid`` end to end: SIGKILL recovery, recycled pids, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from knockout.asm import disasm
from knockout.cuts import Cut, Return
from knockout.journal import Journal
from knockout.plan import plan_at
from knockout.search.elfcode import ElfCode
from tests.process.conftest import NORMAL, Program, run_knockout

Start = Callable[..., Program]
CUT = (42, 1049, 1)  # while compute returns 42
KNOCKOUT = (sys.executable, "-m", "knockout")
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def held_cut(prog: Program, *extra: str) -> subprocess.Popen[str]:
    """``knockout cut compute --return 42 --json`` running, its cut applied."""
    ko = subprocess.Popen(
        [*KNOCKOUT, "cut", "compute", "--pid", str(prog.pid), "--return", "42", "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert ko.stdout is not None
    event = json.loads(ko.stdout.readline())
    assert event["event"] == "applied"
    assert event["location"] == "compute"
    assert event["after"][-1] == "ret"
    return ko


def planned_return(prog: Program, value: int = 42) -> Cut:
    """The cut knockout plans for ``compute --return VALUE``: its own encoder, from the ELF file."""
    return plan_at(ElfCode(str(prog.binary)), "compute", Return(value))


def code_of(prog: Program, name: str = "compute") -> bytes:
    """The function's bytes in the running program."""
    address = prog.runtime_offset() + prog.function(name)[0]
    size = len(prog.function(name)[1])
    with open(f"/proc/{prog.pid}/mem", "rb") as mem:
        mem.seek(address)
        return mem.read(size)


def assert_untouched(prog: Program) -> None:
    for name in ("compute", "outer", "flagged"):
        assert code_of(prog, name) == prog.function(name)[1], name


def test_cut_holds_for_a_while_then_reverts(start: Start, journal: Journal) -> None:
    prog = start(8)
    ko = held_cut(prog, "--for", "30")
    assert set(prog.sample()) == {CUT}
    ko.send_signal(signal.SIGTERM)
    out, err = ko.communicate(timeout=30)
    assert ko.returncode == 0, err
    assert json.loads(out)["event"] == "reverted"
    assert set(prog.sample()) == {NORMAL}
    assert_untouched(prog)
    assert journal.entries() == []


def test_text_output_shows_address_bytes_and_disassembly(start: Start) -> None:
    prog = start(0)
    result = run_knockout("cut", "compute", "--pid", str(prog.pid), "--return", "42", "--for", "0")
    assert result.returncode == 0, result.stderr
    address = prog.runtime_offset() + prog.function("compute")[0]
    cut = planned_return(prog)
    assert f"address  {address:#x} (compute)" in result.stdout
    assert f"{cut.old.hex(' ')}  ->  {cut.new.hex(' ')}" in result.stdout
    first = disasm(cut.new, cut.arch, vma=0)[0]
    assert f"{first.mnemonic} {first.op_str}" in result.stdout  # mov eax, 0x2a | mov x0, #0x2a
    assert "reverted" in result.stdout
    assert_untouched(prog)


def guardian_of(pid: int) -> int | None:
    """The pid of the guardian watching knockout ``pid`` (see knockout.guardian), if any."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"knockout.guardian" in argv and str(pid).encode() in argv:
            return int(entry)
    return None


def wait_until(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``done`` (no timing is asserted: the deadline only keeps a broken run finite)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_sigkill_of_knockout_the_guardian_restores(start: Start, journal: Journal) -> None:
    """The dead-man switch of process cuts: nobody runs a command, the bytes come back."""
    prog = start(8)
    ko = held_cut(prog, "--for", "60")
    guardian = guardian_of(ko.pid)
    assert guardian is not None, "knockout started no guardian for its cut"
    assert os.getsid(guardian) != os.getsid(ko.pid)  # its own session: a hang-up spares it
    ko.kill()
    ko.wait()
    wait_until(lambda: code_of(prog) == prog.function("compute")[1], "compute restored")
    assert set(prog.sample()) == {NORMAL}
    assert_untouched(prog)
    wait_until(lambda: journal.entries() == [], "journal cleared")
    wait_until(lambda: guardian_of(ko.pid) is None, "the guardian exits")


def test_sigkill_of_a_running_trial_the_guardian_restores(start: Start, journal: Journal) -> None:
    prog = start(4)
    trial = subprocess.Popen(
        [
            *KNOCKOUT,
            "trial",
            "compute",
            "--pid",
            str(prog.pid),
            "--return",
            "42",
            "--symptom",
            "load",
            "--window",
            "0.5s",
            "--no-warmup",
            "--no-profile",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: journal.entries() != [], "the trial applies its cut")
    trial.kill()
    trial.wait()
    wait_until(lambda: code_of(prog) == prog.function("compute")[1], "compute restored")
    wait_until(lambda: journal.entries() == [], "journal cleared")
    assert_untouched(prog)


def test_sigkill_of_knockout_and_its_guardian_then_revert_all_restores(
    start: Start, journal: Journal
) -> None:
    prog = start(8)
    ko = held_cut(prog)
    held = run_knockout("revert", "--all")
    assert held.returncode == 2
    assert f"held by knockout pid {ko.pid}" in held.stderr
    assert set(prog.sample()) == {CUT}

    guardian = guardian_of(ko.pid)
    assert guardian is not None
    os.kill(guardian, signal.SIGKILL)  # both die: only 'revert --all' is left
    ko.kill()  # SIGKILL: no chance to revert
    ko.wait()
    assert set(prog.sample()) == {CUT}
    (row,) = json.loads(run_knockout("list", "--json", "--pid", str(prog.pid)).stdout)
    assert row["holder"].startswith("orphaned") and row["state"] == "in place"

    result = run_knockout("revert", "--all")
    assert result.returncode == 0, result.stderr
    assert "restored" in result.stdout
    assert set(prog.sample()) == {NORMAL}
    assert_untouched(prog)
    assert journal.entries() == []


def test_detach_then_revert_by_pid(start: Start, journal: Journal) -> None:
    prog = start(2)
    result = run_knockout("cut", "compute", "--pid", str(prog.pid), "--return", "42", "--detach")
    assert result.returncode == 0, result.stderr
    assert set(prog.sample()) == {CUT}
    listed = run_knockout("list", "--pid", str(prog.pid))
    assert "compute" in listed.stdout and "detached" in listed.stdout
    assert run_knockout("revert", "--all", "--pid", str(prog.pid)).returncode == 0
    assert set(prog.sample()) == {NORMAL}
    assert_untouched(prog)
    assert "no cuts in place" in run_knockout("list", "--pid", str(prog.pid)).stdout


def test_recycled_pid_is_never_touched(start: Start, journal: Journal) -> None:
    prog = start(0)
    result = run_knockout("cut", "compute", "--pid", str(prog.pid), "--return", "42", "--detach")
    assert result.returncode == 0, result.stderr
    (entry,) = journal.entries()
    # the journal now speaks of another process that had this pid
    path = journal.directory / f"{entry.key}.json"
    data = json.loads(path.read_text())
    data["start_time"] -= 1
    path.unlink()
    (journal.directory / f"{prog.pid}-{data['start_time']}-{entry.address:x}.json").write_text(
        json.dumps(data)
    )
    result = run_knockout("revert", "--all")
    assert result.returncode == 0, result.stderr
    assert "is gone; entry cleared, nothing written" in result.stdout
    assert prog.sample() == [CUT]  # untouched: still cut
    cut = planned_return(prog)
    at = cut.address - prog.function("compute")[0]
    assert code_of(prog)[at : at + cut.size] == cut.new
    assert journal.entries() == []


def test_target_exits_during_a_held_cut(start: Start, journal: Journal) -> None:
    prog = start(2)
    ko = held_cut(prog, "--for", "60")
    prog.proc.kill()
    prog.proc.wait()
    _, err = ko.communicate(timeout=30)
    assert ko.returncode == 2
    assert err.count("\n") == 1
    assert "exited while the cut at compute was in place" in err
    assert journal.entries() == []


def _no_such_pid() -> str:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return str(pid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cut", "compute", "--pid", "NOPID", "--return", "0"], "no process with pid"),
        (["cut", "compute", "--pid", "-3", "--return", "0"], "positive process id"),
        (["cut", "no_such_function", "--pid", "PID", "--return", "0"], "no symbol"),
        (["cut", "compute", "--pid", "PID", "--set", "zz9=1"], "zz9"),
        (["cut", "compute", "--pid", "PID", "--bytes", "xyz"], "not hex bytes"),
        (["cut", "compute+1", "--pid", "PID", "--skip"], "compute+0x1"),
        (["cut", "compute", "--pid", "PID", "--return", "0", "--detach", "--for", "1"], "--for"),
        (["cut", "DATA", "--pid", "PID", "--bytes", "00"], "0x"),
        (["cut", "compute", "--pid", "PID", "--kernel", "--return", "0"], "not allowed with"),
        (["revert"], "--all"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(
    start: Start, journal: Journal, args: list[str], message: str
) -> None:
    prog = start(1)
    data = prog.data_symbol("factor")
    replace = {"PID": str(prog.pid), "NOPID": _no_such_pid(), "DATA": f"{data:#x}"}
    result = run_knockout(*(replace.get(a, a) for a in args))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("knockout:"), result.stderr
    assert message in result.stderr
    assert_untouched(prog)
    assert journal.entries() == []
    assert prog.sample() == [NORMAL]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_no_permission(start: Start, journal: Journal) -> None:
    prog = start(1)
    result = subprocess.run(
        [*AS_NOBODY, *KNOCKOUT, "cut", "compute", "--pid", str(prog.pid), "--return", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert f"no permission to trace pid {prog.pid} (owned by uid 0)" in result.stderr
    assert_untouched(prog)


def test_another_tracer_is_named(start: Start, journal: Journal) -> None:
    prog = start(1)
    tracer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from knockout import ptrace; "
            "ptrace.seize(int(sys.argv[1])); print('ok', flush=True); time.sleep(60)",
            str(prog.pid),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracer.stdout is not None and tracer.stdout.readline().strip() == "ok"
        result = run_knockout("cut", "compute", "--pid", str(prog.pid), "--return", "0")
    finally:
        tracer.kill()
        tracer.wait()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"already traced by pid {tracer.pid} (python" in result.stderr
    assert_untouched(prog)
    assert journal.entries() == []
    assert prog.sample() == [NORMAL]


def test_sigkill_of_a_trial_with_a_write_the_guardian_restores_the_file(
    start: Start, tmp_path: Path
) -> None:
    prog = start(0)
    setting = tmp_path / "setting"
    setting.write_text("10\n")
    trial = subprocess.Popen(
        [
            *KNOCKOUT,
            "trial",
            "--pid",
            str(prog.pid),
            "--write",
            f"{setting}=4",
            "--symptom",
            "load",
            "--window",
            "0.5s",
            "--no-warmup",
            "--no-profile",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: setting.read_text().strip() == "4", "the trial writes the remedy")
    trial.kill()
    trial.wait()
    wait_until(lambda: setting.read_text().strip() == "10", "the old value restored")
