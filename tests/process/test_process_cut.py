"""Cuts in a running C program: each intent changes its output, revert restores the ELF bytes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import knockout
from knockout.asm import Insn
from knockout.cuts import Cut, Intent, RawBytes, Return, SetReg, Skip, SkipCall
from knockout.errors import BadInput, UnsafeCut
from knockout.journal import Journal
from knockout.plan import plan_at
from knockout.targets import AppliedCut
from knockout.targets.process import ProcessTarget, explain_ptrace_refusal, revert_journaled
from tests.process.conftest import NORMAL, Program, wait_for

Start = Callable[..., Program]
X86 = os.uname().machine == "x86_64"
#: "return 99" as raw bytes, and a NOP, per ISA
RET99 = bytes.fromhex("b863000000c3") if X86 else bytes.fromhex("600c8052c0035fd6")
NOP = b"\x90" if X86 else bytes.fromhex("1f2003d5")


def offset_of(prog: Program, function: str, match: Callable[[Insn], bool]) -> int:
    """Offset of the first instruction of ``function`` that ``match`` accepts."""
    for insn in prog.insns(function):
        if match(insn):
            return insn.address
    raise AssertionError(f"no such instruction in {function}: {prog.insns(function)}")


def _is_load(i: Insn) -> bool:
    return (i.mnemonic == "mov" and "ptr [" in i.op_str) or i.mnemonic == "ldr"


def _is_add_one(i: Insn) -> bool:
    return i.mnemonic == "add" and i.op_str.replace("#", "").endswith(" 1")


def _is_call(i: Insn) -> bool:
    return i.mnemonic in ("call", "bl")


def intent_cases(prog: Program) -> list[tuple[str, Intent, tuple[int, int, int]]]:
    """(spec, intent, what every worker reports while the cut holds)."""
    load = next(i for i in prog.insns("compute") if _is_load(i))
    reg = load.op_str.split(",")[0].strip()  # the register that receives `factor`
    return [
        ("compute", Return(42), (42, 1049, 1)),
        (f"compute+{load.address:#x}", SetReg(reg, 5), (36, 1049, 1)),
        (f"compute+{offset_of(prog, 'compute', _is_add_one):#x}", Skip(), (21, 1049, 1)),
        (f"outer+{offset_of(prog, 'outer', _is_call):#x}", SkipCall(5), (22, 1005, 1)),
        (f"flagged+{offset_of(prog, 'flagged', _is_call):#x}", SkipCall(), (22, 1049, 0)),
        ("compute", RawBytes(RET99), (99, 1049, 1)),
    ]


#: what every worker reports while a function's whole body returns 99
WHOLE_BODY = {"compute": (99, 1049, 1), "outer": (22, 99, 1)}


def whole_body_cut(
    prog: Program, target: ProcessTarget, function: str = "compute"
) -> tuple[Cut, tuple[int, int, int]]:
    """A cut over all of ``function``'s instructions, "return 99" then NOPs.

    Natively threads are often stopped inside compute (after its slow
    division).  In a TCG guest (QEMU, as in tests/vm/test_arm64_guest.py) a
    vCPU takes interrupts only between translated blocks, and compute's
    straight-line body is one block: no thread is ever stopped strictly
    inside it.  outer's call to helper ends a block, so a thread can be
    stopped at the return point inside outer on any CPU.
    """
    ret = offset_of(prog, function, lambda i: i.mnemonic == "ret")
    end = ret + (1 if X86 else 4)
    new = RET99 + NOP * ((end - len(RET99)) // len(NOP))
    return plan_at(target, function, RawBytes(new)), WHOLE_BODY[function]


def apply_retrying(target: ProcessTarget, planned: Cut, attempts: int = 100) -> AppliedCut:
    """Apply, retrying (as the refusal says to) while a thread is inside a call the cut makes."""
    for _ in range(attempts):
        try:
            return target.apply(planned)
        except UnsafeCut as exc:
            if "would return into the cut" not in str(exc):
                raise
    raise AssertionError(f"{planned.location}: refused {attempts} times in a row")


def assert_original_code(prog: Program, target: ProcessTarget) -> None:
    """The cut functions' bytes in memory equal the ELF file's."""
    table = target.symbols()
    for name in ("compute", "outer", "flagged", "spin"):
        _, code = prog.function(name)
        assert target.read(table.resolve(name).address, len(code)) == code, name


@pytest.mark.parametrize("threads", [0, 8], ids=["single-threaded", "8-threads"])
def test_each_intent_changes_output_and_revert_restores(
    start: Start, threads: int, journal: Journal
) -> None:
    prog = start(threads)
    target = ProcessTarget(prog.pid, journal=journal)
    workers = max(threads, 1)
    assert prog.sample() == [NORMAL] * workers
    for spec, intent, expected in intent_cases(prog):
        planned = plan_at(target, spec, intent)
        with knockout.cut(target, planned) as applied:
            assert prog.sample() == [expected] * workers, (spec, intent)
            assert [e.address for e in journal.entries(prog.pid)] == [planned.address]
            assert applied.mechanism == "ptrace"
        assert prog.sample() == [NORMAL] * workers, (spec, intent)
        assert journal.entries() == []
        assert_original_code(prog, target)


def test_thousand_cycles_with_eight_threads_running_through_the_cut(
    start: Start, journal: Journal
) -> None:
    prog = start(8)
    target = ProcessTarget(prog.pid, journal=journal)
    cases = [(plan_at(target, s, i), e) for s, i, e in intent_cases(prog)]
    wide = [whole_body_cut(prog, target, f) for f in ("compute", "outer")]
    for n in range(1000):
        # every other cycle cuts a whole body, where threads are stopped (see whole_body_cut)
        planned, expected = wide[n // 2 % 2] if n % 2 else cases[n // 2 % len(cases)]
        applied = apply_retrying(target, planned)
        assert set(prog.sample()) == {expected}, (n, planned.location)
        target.revert(applied)
        assert set(prog.sample()) == {NORMAL}, n
    assert prog.proc.poll() is None
    assert target.steps_taken > 0, "no thread was ever inside a cut: stepping went untested"
    assert_original_code(prog, target)
    assert journal.entries() == []


def test_threads_created_while_attaching_are_stopped_too(start: Start, journal: Journal) -> None:
    """A thread keeps creating short-lived threads: /proc/PID/task is rescanned until stable."""
    prog = start(2, "churn")
    target = ProcessTarget(prog.pid, journal=journal)
    planned, expected = whole_body_cut(prog, target)
    for _ in range(200):
        applied = target.apply(planned)
        assert set(prog.sample()) == {expected}
        target.revert(applied)
        assert set(prog.sample()) == {NORMAL}
    assert prog.proc.poll() is None
    assert_original_code(prog, target)


def test_zombie_leader_is_skipped(start: Start, journal: Journal) -> None:
    """The main thread called pthread_exit: /proc/PID has no memory; a live thread's id works,
    and the zombie leader in /proc/TID/task (which cannot be seized) is skipped."""
    prog = start(2, "leader-exits")
    wait_for(lambda: "Z" in Path(f"/proc/{prog.pid}/status").read_text().split("State:")[1][:4])
    with pytest.raises(BadInput, match=r"main thread of pid .* has exited.*--pid [0-9]+$"):
        ProcessTarget(prog.pid, journal=journal)
    live = min(int(t) for t in os.listdir(f"/proc/{prog.pid}/task") if int(t) != prog.pid)
    target = ProcessTarget(live, journal=journal)
    with knockout.cut(target, plan_at(target, "compute", Return(42))):
        assert prog.sample() == [(42, 1049, 1)] * 2
    assert prog.sample() == [NORMAL] * 2
    assert_original_code(prog, target)


def test_signals_arriving_during_cuts_are_delivered(start: Start, journal: Journal) -> None:
    """SIGALRM every millisecond: signal-delivery stops are re-delivered, none kills the program."""
    prog = start(8, "alarm")
    target = ProcessTarget(prog.pid, journal=journal)
    planned, expected = whole_body_cut(prog, target)
    prog.sample()
    before = prog.alarms
    for _ in range(200):
        applied = target.apply(planned)
        assert set(prog.sample()) == {expected}
        target.revert(applied)
        assert set(prog.sample()) == {NORMAL}
    assert prog.proc.poll() is None
    assert prog.alarms > before
    assert target.signals_redelivered > 0, "no signal-delivery stop: the path went untested"
    assert_original_code(prog, target)


def test_refuses_when_a_thread_cannot_leave_the_cut(start: Start, journal: Journal) -> None:
    """The target's own guard, behind the planner's.

    The planner refuses a cut that a branch enters in the middle, so a thread
    can hardly be trapped inside a planned cut; here a planned cut of spin's
    loop is widened to include the store before it, and the spinning thread
    can never leave it.
    """
    prog = start(1, "spin")
    target = ProcessTarget(prog.pid, journal=journal, step_limit=16)
    (back_edge,) = [i for i in prog.insns("spin") if i.mnemonic in ("je", "b.eq", "cbz")]
    loop = int(back_edge.op_str.split()[-1].lstrip("#"), 16)  # the loop head
    ret = offset_of(prog, "spin", lambda i: i.mnemonic == "ret")
    _, code = prog.function("spin")
    planned = plan_at(target, f"spin+{loop:#x}", RawBytes(code[loop:ret]))
    widened = replace(
        planned, address=planned.address - loop, old=code[:ret], new=code[:ret], location="spin"
    )
    for _ in range(3):
        with pytest.raises(UnsafeCut, match="stayed inside spin for 16 single-steps"):
            target.apply(widened)
        assert journal.entries() == []
        assert_original_code(prog, target)
    assert target.steps_taken == 3 * 16
    assert prog.sample() == [NORMAL]


def test_refuses_when_a_thread_would_return_into_the_cut(start: Start, journal: Journal) -> None:
    """spinner() calls spin(), which never returns: a cut over that call and the next
    instruction would put spin's return address in the middle of the new code."""
    prog = start(1, "spin")
    target = ProcessTarget(prog.pid, journal=journal)
    call = offset_of(prog, "spinner", _is_call)
    after = next(i for i in prog.insns("spinner") if i.address > call)
    _, code = prog.function("spinner")
    planned = plan_at(target, f"spinner+{call:#x}", RawBytes(code[call : after.end]))
    with pytest.raises(UnsafeCut, match="would return into the cut; nothing written"):
        target.apply(planned)
    assert journal.entries() == []
    assert target.read(planned.address, planned.size) == planned.old
    # the call alone is fine: its return address is the cut's end
    only_call = plan_at(target, f"spinner+{call:#x}", RawBytes(code[call : after.address]))
    with knockout.cut(target, only_call):
        assert prog.sample() == [NORMAL]


def test_refusals_write_nothing(start: Start, journal: Journal) -> None:
    prog = start(2)
    target = ProcessTarget(prog.pid, journal=journal)
    planned = plan_at(target, "compute", Return(42))
    factor = prog.data_symbol("factor")
    in_data = replace(planned, address=factor, old=target.read(factor, planned.size))
    with pytest.raises(UnsafeCut, match="not in an executable mapping"):
        target.apply(in_data)
    with pytest.raises(UnsafeCut, match="expected 00 00"):
        target.apply(replace(planned, old=bytes(planned.size)))
    with knockout.cut(target, planned):
        again = plan_at(target, "compute", Return(7))
        with pytest.raises(UnsafeCut, match="overlaps the cut at compute"):
            target.apply(again)
        assert len(journal.entries()) == 1
    assert journal.entries() == []
    assert_original_code(prog, target)
    assert prog.sample() == [NORMAL] * 2


def test_interrupted_apply_puts_the_original_back(
    start: Start, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arriving just after the bytes were written: apply undoes its own write."""
    prog = start(2)
    target = ProcessTarget(prog.pid, journal=journal)
    planned = plan_at(target, "compute", Return(42))
    swap = ProcessTarget._swap

    def swap_then_interrupt(self: ProcessTarget, cut: Cut, expect: bytes, write: bytes) -> None:
        swap(self, cut, expect, write)
        if write == planned.new:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProcessTarget, "_swap", swap_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        target.apply(planned)
    assert journal.entries() == []
    assert_original_code(prog, target)
    assert prog.sample() == [NORMAL] * 2


def test_revert_after_a_torn_write_and_refusal_over_foreign_bytes(
    start: Start, journal: Journal
) -> None:
    """revert_journaled restores over any byte-wise mix of cut and original (a write cut
    short by SIGKILL), and refuses, keeping the entry, over bytes that are neither."""
    prog = start(2)
    target = ProcessTarget(prog.pid, journal=journal)
    planned = plan_at(target, "compute", Return(42))
    target.leave(target.apply(planned))
    half = planned.size // 2
    os.kill(prog.pid, signal.SIGSTOP)  # no thread runs the bytes written behind knockout's back
    wait_for(lambda: all_threads_stopped(prog.pid))  # seizing mid group-stop can miss the stop
    try:
        poke(prog.pid, planned.address + half, planned.old[half:])  # the torn write
        (outcome,) = revert_journaled(journal)
        assert outcome.status == "reverted", outcome.message
        assert target.read(planned.address, planned.size) == planned.old

        target.leave(target.apply(planned))
        poke(prog.pid, planned.address, b"\xcc")  # someone else's byte
        (outcome,) = revert_journaled(journal)
        assert outcome.status == "failed"
        assert f"expected {planned.new[:2].hex(' ')}" in outcome.message
        assert len(journal.entries()) == 1
        poke(prog.pid, planned.address, planned.new[:1])
        (outcome,) = revert_journaled(journal)
        assert outcome.status == "reverted", outcome.message
    finally:
        os.kill(prog.pid, signal.SIGCONT)
    assert journal.entries() == []
    assert_original_code(prog, target)
    assert prog.sample() == [NORMAL] * 2


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in group-stop (state T)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            states.append(f.read().rpartition(")")[2].split()[0])
    return all(state == "T" for state in states)


def poke(pid: int, address: int, data: bytes) -> None:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


@pytest.mark.parametrize(
    ("tracer", "yama", "euid", "owner", "expected"),
    [
        (4242, 1, 0, 0, "already traced by pid 4242 (gdb); detach that tracer"),
        (0, 3, 0, 0, "ptrace_scope=3) until reboot"),
        (0, 1, 1000, 0, "owned by uid 0); run knockout as root or as uid 0"),
        (0, 1, 1000, 1000, "refused by Yama (kernel.yama.ptrace_scope=1); run knockout as root"),
        (0, 2, 1000, 1000, "ptrace_scope=2"),
        (0, None, 0, 0, "run knockout as root in the target's namespace"),
    ],
)
def test_ptrace_refusals_name_cause_and_fix(
    tracer: int, yama: int | None, euid: int, owner: int, expected: str
) -> None:
    message = explain_ptrace_refusal(123, tracer, "gdb", yama, euid, owner)
    assert expected in message
    assert "\n" not in message
