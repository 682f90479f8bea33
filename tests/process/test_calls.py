"""Counting calls with uprobes in a real process: counts equal the calls the program makes.

The program is built here (``-O2``, no frame pointers): ``f`` calls ``g``
exactly K times per call (K from argv, so the loop stays a loop), and on
command runs ``f`` exactly N times (a burst) or once a millisecond until
told to stop (steady).  The ground truth is the program's own K and N; the
probes are checked gone afterwards in tracefs itself.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knockout.elf import open_elf
from knockout.errors import BadInput, NotFound, Refused, TargetGone
from knockout.measure.calls import ProbeSet, Snapshot, count_calls, counts_between, probing
from knockout.measure.probecost import call_site_offsets
from knockout.measure.tracefs import mounts, open_tracefs, parse_group, probe_groups
from knockout.symbols import elf_symbols

REPO = Path(__file__).resolve().parents[2]

SOURCE = r"""
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile long sink;
static int k;  /* calls of g per call of f, from argv: the loop stays a loop */

__attribute__((noipa)) void g(long i) { sink += i; }
__attribute__((noipa)) void f(void) { for (int i = 0; i < k; i++) g(i); }
/* never called: an instruction no uprobe may take (x86: int $0x80) */
__attribute__((noipa)) void never(void) { __asm__ volatile("nop\n\tint $0x80"); }

static int stop_asked(int ms) {
    struct pollfd in = {0, POLLIN, 0};
    return poll(&in, 1, ms) > 0;
}

int main(int argc, char **argv) {
    char c;
    k = atoi(argv[1]);
    long n = atol(argv[2]);
    printf("ready\n");
    fflush(stdout);
    while (read(0, &c, 1) == 1) {
        if (c == 'b')                       /* a burst: exactly n calls of f */
            for (long i = 0; i < n; i++) f();
        else if (c == 's')                  /* steady: f every ms until a byte comes */
            while (!stop_asked(1)) f();
        if (c != 's' || read(0, &c, 1) == 1)
            write(1, &c, 1);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The counted program, built -O2 without frame pointers."""
    directory = tmp_path_factory.mktemp("calls")
    source = directory / "fanout.c"
    source.write_text(SOURCE)
    binary = directory / "fanout"
    subprocess.run(
        ["gcc", "-O2", "-fomit-frame-pointer", "-o", str(binary), str(source)], check=True
    )
    return binary


@pytest.fixture(scope="module")
def site(program: Path) -> str:
    """``f+OFF``: the one call of ``g`` in ``f``."""
    offsets = call_site_offsets(str(program), "f", "g")
    assert len(offsets) == 1, f"expected one call of g in f, found {offsets}"
    return f"f+{offsets[0]:#x}"


class Running:
    """The program, running and waiting for commands."""

    def __init__(self, binary: Path, k: int, n: int) -> None:
        self.k, self.n = k, n
        self.process = subprocess.Popen(
            [str(binary), str(k), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.read_line() == b"ready\n"
        self.pid = self.process.pid

    def read_line(self) -> bytes:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def command(self, c: bytes) -> None:
        """Send one command byte."""
        assert self.process.stdin is not None
        self.process.stdin.write(c)
        self.process.stdin.flush()

    def acked(self, c: bytes) -> None:
        """Wait until the program acknowledged command ``c``."""
        assert self.process.stdout is not None
        assert self.process.stdout.read(1) == c

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def running(program: Path) -> Iterator[Running]:
    target = Running(program, k=7, n=1234)
    try:
        yield target
    finally:
        target.close()


def leftovers(owner_pid: int) -> list[str]:
    """Probe groups and tracing instances of ``owner_pid`` that tracefs still holds."""
    tracefs = open_tracefs()
    try:
        names = set(probe_groups(tracefs))
        instances = tracefs.path("instances")
        if instances.is_dir():
            names |= {p.name for p in instances.iterdir()}
    finally:
        tracefs.close()
    return sorted(n for n in names if (parsed := parse_group(n)) and parsed[0].pid == owner_pid)


def private_mounts(owner_pid: int) -> list[str]:
    """knockout's private tracefs mounts of ``owner_pid``."""
    return [p for p, kind in mounts() if kind == "tracefs" and f"tracefs-{owner_pid}_" in p]


@pytest.mark.parametrize(("k", "n"), [(7, 1234), (1, 3001)])
def test_hits_equal_the_calls_made(program: Path, site: str, k: int, n: int) -> None:
    target = Running(program, k, n)
    try:
        with probing(["f", site, "g"], pid=target.pid) as probes:
            before = probes.read()
            target.command(b"b")
            target.acked(b"b")
            counts = counts_between(before, probes.read(), probes.target, "uprobe")
    finally:
        target.close()
    assert counts.hits == {"f": n, site: n * k, "g": n * k}
    assert counts.fanout("f", site) == k
    assert leftovers(os.getpid()) == []
    assert private_mounts(os.getpid()) == []


def test_count_calls_in_a_window_of_steady_calls(running: Running, site: str) -> None:
    running.command(b"s")
    try:
        counts = count_calls(["f", site], 1.0, pid=running.pid)
    finally:
        running.command(b"x")
        running.acked(b"x")
    entries, calls = counts.calls("f"), counts.calls(site)
    assert entries > 0, counts.as_dict()
    # a window boundary may cut one call of f at each end: at most K calls of g apart each
    assert abs(calls - running.k * entries) <= 2 * running.k, counts.as_dict()
    assert counts.calls_per_s("f") == entries / counts.seconds
    assert counts.mechanism == "uprobe" and counts.shared_with == ()
    assert leftovers(os.getpid()) == []


def test_a_window_goes_on_until_every_point_was_called(
    running: Running, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the burst runs right after the window's first end read: only a window that goes
    # on past ``seconds`` for want of calls of f can count it
    reads = 0
    real_read = ProbeSet.read

    def read_then_burst(self: ProbeSet) -> Snapshot:
        nonlocal reads
        snapshot = real_read(self)
        reads += 1
        if reads == 2:
            running.command(b"b")
            running.acked(b"b")
        return snapshot

    monkeypatch.setattr(ProbeSet, "read", read_then_burst)
    counts = count_calls(["f", site], 0.1, pid=running.pid, min_calls=1, max_seconds=60)
    assert reads >= 3, counts.as_dict()
    assert counts.calls("f") == running.n, counts.as_dict()
    assert counts.calls(site) == running.n * running.k, counts.as_dict()
    assert not any("fewer than" in note for note in counts.notes), counts.notes
    assert leftovers(os.getpid()) == []


def test_a_point_short_of_its_calls_at_the_longest_window_is_named(running: Running) -> None:
    counts = count_calls(["f"], 0.1, pid=running.pid, min_calls=1, max_seconds=0.3)
    assert counts.calls("f") == 0
    assert counts.seconds >= 0.3
    assert any(re.search(r"called fewer than 1 times in .* s: f \(", n) for n in counts.notes)
    assert leftovers(os.getpid()) == []


def test_a_point_inside_an_instruction_is_refused(running: Running, site: str) -> None:
    inside = site.split("+")[0] + f"+{int(site.split('+')[1], 16) + 1:#x}"  # mid call insn
    with pytest.raises(BadInput, match="inside an instruction of f"):
        count_calls(["f", inside], 0.1, pid=running.pid)
    assert leftovers(os.getpid()) == []


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the refused instruction is x86's")
def test_an_instruction_the_kernel_cannot_probe_is_named(program: Path, running: Running) -> None:
    never = elf_symbols(str(program)).lookup("never")
    code = open_elf(str(program)).read(never.address, never.size)
    refused = f"never+{code.index(bytes.fromhex('cd80')):#x}"  # int $0x80
    with pytest.raises(
        Refused, match=f"refuses to arm the uprobe at {re.escape(refused)}.*cannot single-step"
    ):
        count_calls(["f", refused], 0.1, pid=running.pid)
    assert leftovers(os.getpid()) == []


def test_kernel_counting_without_kprobes_says_where_to_go() -> None:
    tracefs = open_tracefs()
    try:
        has_kprobes = tracefs.has("kprobe_events")
    finally:
        tracefs.close()
    if has_kprobes:
        pytest.skip("this host's kernel has kprobe events; tests/vm counts kernel calls")
    with pytest.raises(NotFound, match=r"no kprobe events.*in the guest \(knockout vm"):
        count_calls(["__x64_sys_getppid"], 0.1, kernel=True)
    assert leftovers(os.getpid()) == []


def test_a_target_that_exits_mid_window_is_reported(running: Running) -> None:
    running.command(b"s")
    threading.Timer(0.5, running.process.kill).start()
    with pytest.raises(TargetGone, match=f"pid {running.pid} exited"):
        count_calls(["f"], 1.5, pid=running.pid)
    assert leftovers(os.getpid()) == []


def test_a_shared_library_names_the_other_processes(running: Running) -> None:
    counts = count_calls(["getppid"], 0.2, pid=running.pid)  # libc: mapped here too
    assert os.getpid() in counts.shared_with
    assert any("other process" in note for note in counts.notes)


HOLDER = """
import sys, time
from knockout.measure.calls import probing
with probing(["f", "g"], pid=int(sys.argv[1])) as probes:
    print(probes.group, flush=True)
    time.sleep(120)
"""


def _holder(pid: int) -> tuple[subprocess.Popen[str], str]:
    """A knockout process holding probes in ``pid``; its probe group."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(pid)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert holder.stdout is not None
    group = holder.stdout.readline().strip()
    assert parse_group(group), f"the holder said {group!r}"
    return holder, group


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_removes_the_probes(running: Running, sig: signal.Signals) -> None:
    holder, group = _holder(running.pid)
    try:
        assert leftovers(holder.pid) == [group]
        holder.send_signal(sig)
        holder.wait(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert leftovers(holder.pid) == []
    assert private_mounts(holder.pid) == []


def test_probes_of_a_killed_owner_are_removed_next_time(running: Running, site: str) -> None:
    holder, group = _holder(running.pid)
    holder.kill()
    holder.wait()
    assert leftovers(holder.pid) == [group]  # SIGKILL: nothing could run
    deadline = time.monotonic() + 30
    while Path(f"/proc/{holder.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with probing(["f"], pid=running.pid):  # any next probe set clears dead owners' probes
        assert leftovers(holder.pid) == []
    assert private_mounts(holder.pid) == []


def test_revert_all_removes_the_probes_of_a_killed_owner(running: Running) -> None:
    holder, group = _holder(running.pid)
    holder.kill()
    holder.wait()
    assert leftovers(holder.pid) == [group]
    done = subprocess.run(
        [sys.executable, "-m", "knockout", "revert", "--all"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"removed the stale probes {group}" in done.stdout
    assert leftovers(holder.pid) == []
