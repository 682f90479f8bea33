"""Every "return at P" point of a running program, cut for real: it returns V and nothing breaks.

A C program built here (gcc -O2 -g, no frame pointers) calls ``work`` from a
driver that holds six values in callee-saved registers across each call
and checks them afterwards, and counts the calls that returned the
sentinel.  Each planned return-at point of ``work`` (and of ``framed``,
whose epilogue frees a large frame and sets its return value between its
restores) is applied with ptrace while the program runs requests: the
program must stay alive, every register check must pass, and points on
the paths the inputs take must return the sentinel.  A cut that jumps to
an epilogue of another stack state -- what the unwind tables rule out --
is applied too, and must be caught: the program crashes or its checks fail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import knockout
from knockout.asm import disasm
from knockout.cuts import ReturnAt, SkipCall
from knockout.plan import plan_cut
from knockout.search import Candidate, candidates, return_points
from knockout.targets.process import ProcessTarget

SENTINEL = 0x4D2  # 1234: no input makes work() or framed() return it

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile long noise = 3;

__attribute__((noinline)) long leaf(long x) { return x * 3 + noise; }

__attribute__((noinline)) long work(long *p, int n, long k)
{
	long s = 0, t = 1, u = 7;
	if (n <= 0)
		return -5;
	for (int i = 0; i < n; i++) {
		if (p[i] > k)
			s += leaf(p[i]) * t;
		else
			t = leaf(t + s) ^ u;
		u += s >> 3;
		if (s > 100000000)
			return -1;
	}
	return (s + t + u) & 0xffff;
}

__attribute__((noinline)) long framed(int n)
{
	long buf[40];
	for (int i = 0; i < 40; i++)
		buf[i] = leaf(i * n);
	return buf[n % 40] + leaf(buf[3]) - (n & 1);
}

static long bad, hits, calls;

#define KEEP(...) __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f))

__attribute__((noinline)) void drive(long *p, int n, long k, int which)
{
	long a = k * 3 + 1, b = k ^ 0x55, c = k + 7, d = n * 11L, e = k - 2, f = n + k;
	long want = a + 2 * b + 3 * c + 5 * d + 7 * e + 11 * f;
	KEEP();
	long r = which ? framed(n) : work(p, n, k);
	KEEP();
	if (a + 2 * b + 3 * c + 5 * d + 7 * e + 11 * f != want)
		bad++;
	hits += r == 0x4d2;
	calls++;
}

/* clears the stack below main: no stale return address into work() waits there while idle */
__attribute__((noinline)) static void scrub(void)
{
	volatile char pad[32768];
	for (unsigned i = 0; i < sizeof pad; i++)
		pad[i] = 0;
}

int main(void)
{
	long p[64];
	char line[64];
	setvbuf(stdout, NULL, _IOLBF, 0);
	scrub();
	puts("ready");
	while (fgets(line, sizeof line, stdin)) {
		int which = atoi(line);
		bad = hits = calls = 0;
		for (int round = 0; round < 400; round++) {
			int n = round % 17;
			for (int i = 0; i < 64; i++)
				p[i] = (i * 7919L + round * 31L) % 23 - (round % 5 ? 0 : 30000000);
			drive(p, n, round % 11, which);
		}
		scrub();
		printf("calls=%ld hits=%ld bad=%ld\n", calls, hits, bad);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("candidates")
    source = directory / "points.c"
    source.write_text(SOURCE)
    out = directory / "points"
    subprocess.run(
        ["gcc", "-O2", "-g", "-fomit-frame-pointer", "-o", str(out), str(source)], check=True
    )
    return out


@dataclass
class Running:
    proc: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, which: int) -> dict[str, int] | None:
        """One request's counts, or None if the program died (its signal in ``died``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{which}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        line = self.proc.stdout.readline()
        if not line:
            return None
        return {k: int(v) for k, v in (w.split("=") for w in line.split())}


@pytest.fixture
def running(program: Path) -> Iterator[Running]:
    proc = subprocess.Popen(
        [str(program)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.nice(10),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield Running(proc)
    proc.kill()
    proc.wait()


def _apply_each(running: Running, points: list[Candidate], which: int) -> tuple[int, int]:
    """Cut each point in turn; (points applied, points whose cut returned the sentinel)."""
    target = ProcessTarget(running.pid)
    applied = reached = 0
    try:
        for c in points:
            assert c.cut is not None
            with knockout.cut(target, c.cut):
                counts = running.request(which)
            assert counts is not None, f"{c.location} ({c.text}) killed the program"
            assert counts["bad"] == 0, f"{c.location} ({c.text}) clobbered the caller: {counts}"
            assert counts["calls"] == 400
            applied += 1
            reached += counts["hits"] > 0
            after = running.request(which)
            assert after is not None and after["hits"] == 0 and after["bad"] == 0
    finally:
        target.close()
    return applied, reached


@pytest.mark.parametrize(("function", "which"), [("work", 0), ("framed", 1)])
def test_every_return_point_returns_the_value_through_its_epilogue(
    running: Running, function: str, which: int
) -> None:
    baseline = running.request(which)
    assert baseline == {"calls": 400, "hits": 0, "bad": 0}
    target = ProcessTarget(running.pid)
    try:
        points = [c for c in return_points(target, function, return_value=SENTINEL) if c.planned]
    finally:
        target.close()
    intents = [c.intent for c in points if isinstance(c.intent, ReturnAt)]
    assert len(points) > 20
    if function == "framed":  # its epilogue frees the frame and sets rax between restores
        assert any(i.replay for i in intents) or any(i.pop for i in intents)
    applied, reached = _apply_each(running, points, which)
    assert applied == len(points)
    assert reached > applied // 2, (reached, applied)


def test_skipping_each_call_keeps_the_program_whole(running: Running) -> None:
    target = ProcessTarget(running.pid)
    try:
        calls = [c for c in candidates(target, "work", kinds=("skip-call",)) if c.planned]
    finally:
        target.close()
    assert calls and all(isinstance(c.intent, SkipCall) and c.intent.value == 0 for c in calls)
    applied, _ = _apply_each(running, calls, 0)
    assert applied == len(calls)


def test_a_landing_of_another_stack_state_breaks_the_program(running: Running) -> None:
    """What the unwind tables refuse, planned anyway: framed()'s body jumps straight to its
    ``ret`` with the frame still allocated (no freeing, no replayed restore).  The oracle above
    must catch it."""
    target = ProcessTarget(running.pid)
    try:
        points = [c for c in return_points(target, "framed") if c.planned]
        deep = next(
            c for c in points if (m := re.search(r"CFA rsp\+(\d+)", c.text)) and int(m[1]) > 64
        )
        symbol = target.symbols().lookup("framed")
        code = target.read(symbol.address, symbol.size)
        ret = next(i for i in disasm(code, target.arch, symbol.address) if i.mnemonic == "ret")
        assert isinstance(deep.intent, ReturnAt)  # the right way frees the frame first:
        assert deep.intent.epilogue != ret.address or deep.intent.replay or deep.intent.pop
        wrong = plan_cut(
            target.arch,
            code,
            symbol.address,
            deep.address,
            ReturnAt(SENTINEL, ret.address),
            target=target.description,
            location="framed",
        )
        counts = None
        try:
            with knockout.cut(target, wrong):
                counts = running.request(1)
        except ProcessLookupError:  # the revert found the program dead (a zombie: not reaped)
            assert counts is None
    finally:
        target.close()
    broke = counts is None or counts["bad"] > 0
    assert broke, f"a jump from {deep.location} to framed's ret went unseen: {counts}"
    if counts is None:
        assert running.proc.wait(timeout=10) in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGILL)


def _knockout(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "knockout", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_the_cli_lists_the_points_and_cuts_one_with_return_at(running: Running) -> None:
    listing = _knockout(
        "points", "work", "--pid", str(running.pid), "--kind", "return-at", "--json"
    )
    out, err = listing.communicate(timeout=120)
    assert listing.returncode == 0, err
    points = json.loads(out)
    planned = [p for p in points if p["planned"]]
    refused = [p for p in points if not p["planned"]]
    assert planned and refused and all(p["refused"] for p in refused)
    reached = False
    for point in planned[:6]:  # the first points are on every call's path (n > 0 mostly)
        holder = _knockout(
            "cut",
            point["location"],
            "--pid",
            str(running.pid),
            "--return-at",
            str(SENTINEL),
            "--for",
            "60",
            "--json",
        )
        assert holder.stdout is not None
        applied = json.loads(holder.stdout.readline())
        assert applied["event"] == "applied" and applied["location"] == point["location"]
        counts = running.request(0)
        holder.send_signal(signal.SIGINT)  # the cut is reverted on the way out
        holder.communicate(timeout=60)
        assert counts is not None and counts["bad"] == 0, f"{point['location']}: {counts}"
        reached = reached or counts["hits"] > 0
        assert running.request(0) == {"calls": 400, "hits": 0, "bad": 0}
    assert reached, "no return-at cut made work() return the sentinel"
    where = refused[0]["location"]  # refused as listed: the same intent (V from DWARF)
    bad = _knockout("cut", where, "--pid", str(running.pid), "--return-at", "--for", "0")
    _, err = bad.communicate(timeout=120)
    assert bad.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "knockout points" in err
