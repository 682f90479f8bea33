"""Kernel-cut scenarios that run *inside* the guest, as root, on its real kernel.

``python -m tests.vm.kernel_scenarios SCENARIO OUT.json [ARGS...]`` runs one
scenario and writes what it observed to ``OUT.json`` (in the rwdir); the
host-side tests (``tests/vm/test_kernel_cut.py``) judge it.  Nothing here is
mocked: every cut goes through knockout's module into the guest's text.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from knockout.asm import disasm
from knockout.cuts import Cut, Identity, Intent, RawBytes, Return, SetReg, Skip, SkipCall
from knockout.elf import read_kcore
from knockout.plan import plan_at
from knockout.targets import cut as applied_cut
from knockout.targets.kernel import Control, KernelCut, KernelTarget

GETPPID = "__x64_sys_getppid"
UMASK = "__x64_sys_umask"
NI_SYSCALL = "__x64_sys_ni_syscall"
#: a syscall number in the gap of the x86_64 table (after the x86-only numbers from 335 up,
#: before the common ones from 424): 6.1's sys_call_table and 6.12's x64_sys_call() switch
#: send it to __x64_sys_ni_syscall.  Not 335: Linux kernel commit 190fec72df4a ("uprobe:
#: Wire up uretprobe system call") (in v6.11) gave it to uretprobe, which sends SIGILL to a
#: caller that is not the uretprobe trampoline (the intents scenario died with "Illegal
#: instruction" on 6.12).  Not a number past the table either: 6.12's do_syscall_64() has
#: the ni_syscall of that case inlined, so a cut of __x64_sys_ni_syscall never sees it.
NI_NR = 400
_libc = ctypes.CDLL(None, use_errno=True)
Result = dict[str, Any]


def _insns(t: KernelTarget, name: str) -> list[Any]:
    sym = t.symbols().lookup(name)
    return disasm(t.read_text(sym.address, sym.size), t.arch, sym.address)


def _find(t: KernelTarget, name: str, pred: Callable[[Any], bool]) -> int:
    for insn in _insns(t, name):
        if pred(insn):
            return int(insn.address)
    raise SystemExit(f"no matching instruction in {name}: {[str(i) for i in _insns(t, name)]}")


def _calls_to(t: KernelTarget, callee: str) -> Callable[[Any], bool]:
    target = t.symbols().lookup(callee).address

    def pred(insn: Any) -> bool:
        return bool(insn.mnemonic == "call" and insn.op_str == f"{target:#x}")

    return pred


def _ni_syscall() -> int:
    """What an unimplemented syscall returns: -ENOSYS (as -1 and errno), or a cut's value."""
    ctypes.set_errno(0)
    ret = int(_libc.syscall(NI_NR))
    return -ctypes.get_errno() if ret == -1 else ret


def _umask_probe() -> int:
    """umask(0o077) then put 0o022 back; returns what the first call returned."""
    old = os.umask(0o077)
    os.umask(0o022)
    return old


def _listed(t: KernelTarget, cut_id: object) -> KernelCut | None:
    return next((c for c in t.list_cuts() if c.id == cut_id), None)


def _wait_phase(t: KernelTarget, cut_id: object, phase: str, timeout: float = 20.0) -> float:
    """Seconds until the module lists cut ``cut_id`` in ``phase`` (-1: never, within timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        listed = _listed(t, cut_id)
        if listed is not None and listed.phase == phase:
            return time.monotonic() - started
        time.sleep(0.01)
    return -1.0


def _wait_phase_raw(control: Control, cut_id: int, phase: str, timeout: float = 20.0) -> float:
    """As :func:`_wait_phase`, through an open control file."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(c.id == cut_id and c.phase == phase for c in control.listing()):
            return time.monotonic() - started
        time.sleep(0.01)
    return -1.0


def _one(t: KernelTarget, spec: str, intent: Intent, observe: Callable[[], int]) -> Result:
    """Apply, observe at once (the INT3 phase, for a multi-instruction range), wait for the
    jmp, observe again, revert, observe."""
    planned: Cut = plan_at(t, spec, intent)
    text_before = t.read_text(planned.address, planned.size)
    before = observe()
    with applied_cut(t, planned) as applied:
        during = observe()
        site = t.read_text(planned.address, planned.size)
        first = _listed(t, applied.handle)
        jmp_after = _wait_phase(t, applied.handle, "jmp")
        during_jmp = observe()
        site_jmp = t.read_text(planned.address, planned.size)
        last = _listed(t, applied.handle)
        listed = [c.id for c in t.list_cuts()]
    after = observe()
    text_after = t.read_text(planned.address, planned.size)
    return {
        "location": planned.location,
        "address": planned.address,
        "old": planned.old.hex(),
        "new": planned.new.hex(),
        "before": before,
        "during": during,
        "during_jmp": during_jmp,
        "after": after,
        "site_during": site.hex(),
        "site_jmp": site_jmp.hex(),
        "phase_first": first.phase if first else None,
        "protocol": first.protocol if first else None,
        "jmp_after": jmp_after,
        "stub": last.stub if last else 0,
        "unwind": last.unwind if last else None,
        "waited": last.waited if last else None,
        "text_before": text_before.hex(),
        "text_after": text_after.hex(),
        "listed": listed,
        "id": applied.handle,
        "mechanism": applied.mechanism,
    }


def scenario_intents(out: Result, args: list[str]) -> None:
    """Every intent on a real syscall, observed from userspace, then reverted."""
    os.umask(0o022)
    with KernelTarget(ttl=30) as t:
        ppid = os.getppid
        task_pid = _find(t, GETPPID, _calls_to(t, "__task_pid_nr_ns"))
        movsxd = _find(t, GETPPID, lambda i: i.mnemonic == "movsxd" and i.op_str == "rax, ebx")
        xor_edx = _find(t, GETPPID, lambda i: i.mnemonic == "xor" and i.op_str == "edx, edx")
        xchg = _find(t, UMASK, lambda i: i.mnemonic == "xchg")
        out["real_ppid"] = os.getppid()
        out["return"] = _one(t, GETPPID, Return(42), ppid)
        out["skip_call"] = _one(t, f"{task_pid:#x}", SkipCall(55), ppid)
        ni_mov = _find(t, NI_SYSCALL, lambda i: i.mnemonic == "mov" and i.op_str.startswith("rax,"))
        out["set"] = _one(t, f"{ni_mov:#x}", SetReg("rax", 5), _ni_syscall)
        # push 7; pop rax
        out["raw"] = _one(t, f"{movsxd:#x}", RawBytes(bytes.fromhex("6a0758")), ppid)
        out["identity"] = _one(t, f"{xor_edx:#x}", Identity(), ppid)
        out["skip"] = _one(t, f"{xchg:#x}", Skip(), _umask_probe)


def _spin(stop: Any, counts: Any, expected: tuple[int, ...]) -> None:
    good = bad = cut = 0
    while not stop.is_set():
        for _ in range(200):
            v = os.getppid()
            if v == expected[1]:
                cut += 1
            elif v != expected[0]:
                bad += 1
            good += 1
    counts.put((good, cut, bad))


def _preempt_mode() -> str:
    """The preemption model the guest runs (debugfs), e.g. ``full``."""
    try:
        with open("/sys/kernel/debug/sched/preempt") as f:
            text = f.read()
    except OSError:
        return "unknown"
    start, end = text.find("("), text.find(")")
    return text[start + 1 : end] if 0 <= start < end else text.strip()


def scenario_stress(out: Result, args: list[str]) -> None:
    """N cut/revert cycles while two processes call the cut function in a loop.

    ARGS: cycles, budget seconds, hold every H-th cut until its jmp is in
    (the rest are reverted while the INT3 still diverts entrants).
    """
    cycles = int(args[0]) if args else 10000
    budget = float(args[1]) if len(args) > 1 else 240.0
    hold_every = int(args[2]) if len(args) > 2 else 0
    with KernelTarget(ttl=30) as t:
        planned = plan_at(t, GETPPID, Return(42))
        text_before = t.read_text(planned.address, planned.size)
        ctx = mp.get_context("fork")
        stop, counts = ctx.Event(), ctx.Queue()
        workers = [
            ctx.Process(target=_spin, args=(stop, counts, (os.getpid(), 42))) for _ in range(2)
        ]
        for w in workers:
            w.start()
        time.sleep(0.5)
        started = time.monotonic()
        done = held = 0
        held_waits: list[float] = []
        protocols: set[str] = set()
        latencies = []
        cut = f"cut {planned.address:x} {planned.old.hex()} {planned.new.hex()} 30000"
        # the module's own commands: the cycle measures the kernel side, not the journal
        with Control() as control:
            while done < cycles and time.monotonic() - started < budget:
                t0 = time.perf_counter()
                cut_id = int(control.command(cut).removeprefix("id="))
                if hold_every and done % hold_every == 0:
                    waited = _wait_phase_raw(control, cut_id, "jmp")
                    protocols.update(c.protocol for c in control.listing() if c.id == cut_id)
                    held_waits.append(waited)
                    held += 1
                control.command(f"revert {cut_id}")
                latencies.append(time.perf_counter() - t0)
                done += 1
        elapsed = time.monotonic() - started
        stop.set()
        results = [counts.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        latencies.sort()
        out.update(
            cycles=done,
            requested=cycles,
            seconds=elapsed,
            rate=done / elapsed,
            median_ms=latencies[len(latencies) // 2] * 1e3,
            held=held,
            held_reached_jmp=sum(1 for w in held_waits if w >= 0),
            held_median_s=sorted(held_waits)[len(held_waits) // 2] if held_waits else None,
            protocols=sorted(protocols),
            preempt=_preempt_mode(),
            worker_calls=[r[0] for r in results],
            worker_saw_cut=[r[1] for r in results],
            worker_bad=[r[2] for r in results],
            identical=t.read_text(planned.address, planned.size) == text_before,
            remaining=[c.id for c in t.list_cuts()],
        )


def scenario_sigkill(out: Result, args: list[str]) -> None:
    """SIGKILL a knockout holding a cut: the module's TTL puts the text back."""
    ttl = float(args[0]) if args else 1.0
    with KernelTarget(ttl=30) as t:
        planned = plan_at(t, GETPPID, Return(42))
        original = t.read_text(planned.address, planned.size)
    real = os.getppid()
    cmd = [sys.executable, "-m", "knockout", "cut", GETPPID, "--kernel", "--return", "42"]
    cmd += ["--ttl", str(ttl), "--for", "600"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while os.getppid() != 42:
        if child.poll() is not None or time.monotonic() > deadline:
            out["error"] = "the cut never appeared: " + child.stdout.read().decode()  # type: ignore[union-attr]
            child.kill()
            return
        time.sleep(0.01)
    time.sleep(3 * ttl)  # the heartbeat must keep it alive past its TTL
    out["alive_after_3_ttl"] = os.getppid() == 42
    killed = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait()
    while os.getppid() == 42 and time.monotonic() - killed < 30:
        time.sleep(0.005)
    restored = time.monotonic() - killed
    with Control() as control:
        now = bytes.fromhex(control.command(f"read {planned.address:x} {planned.size}"))
        listed = control.listing()
    out.update(
        ttl=ttl,
        restored_after=restored,
        identical=now == original,
        getppid_after=os.getppid(),
        real=real,
        remaining=[c.id for c in listed],
    )


def scenario_cli(out: Result, args: list[str]) -> None:
    """knockout cut/list/revert --kernel, as a user types them."""
    knockout = [sys.executable, "-m", "knockout"]
    real = os.getppid()
    cmd = [*knockout, "cut", GETPPID, "--kernel", "--return", "42", "--for", "120", "--json"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while os.getppid() != 42 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    out["during"] = os.getppid()
    listed = subprocess.run(
        [*knockout, "list", "--kernel", "--json"], capture_output=True, text=True
    )
    out["list_rc"], out["list"] = listed.returncode, listed.stdout + listed.stderr
    reverted = subprocess.run(
        [*knockout, "revert", "--all", "--kernel"], capture_output=True, text=True
    )
    out["revert_rc"], out["revert"] = reverted.returncode, reverted.stdout + reverted.stderr
    out["after_revert"] = os.getppid()
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    out["after_term"] = os.getppid()
    out.update(real=real, cut_rc=child.returncode, cut_stdout=stdout, cut_stderr=stderr)
    empty = subprocess.run([*knockout, "list", "--kernel"], capture_output=True, text=True)
    out["list_after"] = empty.stdout.strip()


def _sh(command: str) -> tuple[int, str]:
    proc = subprocess.run(command, shell=True, capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def scenario_stuck(out: Result, args: list[str]) -> None:
    """Bytes changed under a live cut: stuck, never overwritten, module pinned.

    ARGS: the path of knockout.ko.  The module must be loaded (without
    allow_test_poke) when this starts; it is reloaded with allow_test_poke=1,
    and it stays loaded, pinned, at the end: throw the guest away afterwards.
    """
    ko = args[0]
    with Control() as control:
        out["poke_refused_by_default"] = control.raw("poke ffffffff81000000 9090909090")
    out["reload"] = _sh(f"rmmod knockout && insmod {ko} allow_test_poke=1")
    t = KernelTarget(ttl=1.0, load=False)
    planned = plan_at(t, GETPPID, Return(42))
    original = t.read_text(planned.address, planned.size)
    real = os.getppid()
    applied = t.apply(planned)
    out["jmp_after"] = _wait_phase(t, applied.handle, "jmp")  # poke emulates a jmp meanwhile
    site = t.read_text(planned.address, 5)
    out["during"] = os.getppid()
    # A foreign writer returns from getppid at once: a jmp to the return thunk
    # (or a bare ret), written in place over knockout's jmp to its stub.  The
    # stack is as at entry there, so the kernel stays sound; getppid then
    # returns whatever rax held.
    thunk = t.code_style().return_thunk
    if thunk is not None:
        rel = thunk - (planned.address + 5)
        foreign = b"\xe9" + rel.to_bytes(4, "little", signed=True)
    else:
        foreign = b"\xc3" + b"\xcc" * 4
    out["poke"] = t.control.raw(f"poke {planned.address:x} {foreign.hex()}")
    # the dead-man switch re-checks the bytes at least once a second
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [c.state for c in t.list_cuts() if c.id == applied.handle]
        if states == ["stuck"]:
            break
        time.sleep(0.05)
    out["noticed_after"] = round(10 - (deadline - time.monotonic()), 2)
    out["listed"] = [c.__dict__ | {"old": c.old.hex(), "new": c.new.hex()} for c in t.list_cuts()]
    out["revert"] = t.control.raw(f"revert {applied.handle}")
    out["revert_all"] = t.control.raw("revert all")
    out["renew"] = t.control.raw(f"renew {applied.handle} 1000")
    t.forget(int(applied.handle))  # the target would keep trying to renew and revert it
    t.journal.remove(int(applied.handle))  # nobody holds it now: the CLI may try to revert it
    t.close()
    time.sleep(3)  # three TTLs with no renewal: the switch must still not touch it
    out["rmmod"] = _sh("rmmod knockout")
    out["refcnt"] = _sh("cat /sys/module/knockout/refcnt")[1]
    cli = subprocess.run(
        [sys.executable, "-m", "knockout", "list", "--kernel"], capture_output=True, text=True
    )
    out["cli_list"] = (cli.returncode, cli.stdout.strip(), cli.stderr.strip())
    cli_revert = subprocess.run(
        [sys.executable, "-m", "knockout", "revert", "--all", "--kernel"],
        capture_output=True,
        text=True,
    )
    out["cli_revert"] = (cli_revert.returncode, (cli_revert.stdout + cli_revert.stderr).strip())
    with Control() as control:
        now = bytes.fromhex(control.command(f"read {planned.address:x} {planned.size}"))
        out["listed_at_end"] = [(c.id, c.state) for c in control.listing()]
        (stuck,) = [c for c in control.listing() if c.id == applied.handle]
    stub = read_kcore(stuck.stub, 64)
    out.update(
        id=applied.handle,
        real=real,
        original=original.hex(),
        site=site.hex(),
        foreign=foreign.hex(),
        now=now.hex(),
        module_loaded=os.path.exists("/proc/knockout"),
    )
    # rmmod -f runs the exit path anyway: the stuck cut's stub must stay allocated, intact
    out["rmmod_f"] = _sh("rmmod -f knockout")
    out["gone"] = not os.path.exists("/proc/knockout")
    out["stub_kept"] = read_kcore(stuck.stub, 64) == stub
    out["stub_head"] = stub[:16].hex()
    out["dmesg_exit"] = _sh("dmesg | grep 'knockout:' | tail -5")[1]


def _fixture_symbols(names: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4 and fields[3] == "[ko_fixture]" and fields[2] in names:
                found[fields[2]] = int(fields[0], 16)
    return found


#: (name, function, offset, OLD, NEW, accepted?): the fixture's ranges, see tests/vm/kmod_fixture
FIXTURE_CUTS = (
    # "call *%rax" + NOP3: the call returns to +2, inside the jmp
    ("retpoline_call", "kofx_indirect_call", 8, "ffd00f1f00", "31c00f1f00", False),
    # mov + call *%rax: the call returns to ADDR+5, just past the jmp: fine
    ("call_ends_at_5", "kofx_indirect_call", 5, "4889f8ffd0", "31c0909090", True),
    # NEW may hold no indirect call, nor a rel32 branch aimed inside the range
    ("new_indirect_call", "kofx_indirect_call", 5, "4889f8ffd0", "ffd0909090", False),
    ("new_rel32_inside", "kofx_indirect_call", 5, "4889f8ffd0", "e9fdffffff", False),
    # kofx_cold_fn.cold jumps back to +15
    ("cold_into", "kofx_cold_fn", 9, "0f85" + "00" * 4 + "83c00183c002", "90" * 12, False),
    ("cold_at_start", "kofx_cold_fn", 15, "83c00183c002", "90" * 6, True),
    # the load at +5 has its exception fixup at +13
    ("fixup_into", "kofx_extable_fn", 7, "83c00183c00283c00383c004", "90" * 12, False),
    ("fixup_at_start", "kofx_extable_fn", 13, "83c00383c004", "90" * 6, True),
)


def scenario_refusals(out: Result, args: list[str]) -> None:
    """Cuts over the test fixture's hidden ways into a range: refused, no byte written.

    ARGS: the path of ko_fixture.ko.  knockout.ko must be loaded.  Each range
    that must be refused has a control range next to it that must be accepted
    (and is reverted at once), so the refusals are exact, not blanket.
    """
    _sh(f"lsmod | grep -q '^ko_fixture ' || insmod {args[0]}")
    names = tuple(sorted({c[1] for c in FIXTURE_CUTS}))
    syms = _fixture_symbols(names)
    out["symbols"] = {n: hex(a) for n, a in syms.items()}
    cases: dict[str, Any] = {}
    with Control() as control:
        for name, fn, offset, old, new, _accept in FIXTURE_CUTS:
            addr = syms[fn] + offset
            size = len(old) // 2
            text = control.command(f"read {addr:x} {size}")
            if name == "cold_into":  # the jne's rel32 depends on where .text.unlikely landed
                old = old[:4] + text[4:12] + old[12:]
            err, answer = control.raw(f"cut {addr:x} {old} {new} 5000")
            if not err:
                cut_id = int(answer.removeprefix("id="))
                reverted = control.raw(f"revert {cut_id}")
            else:
                reverted = (0, "not applied")
            cases[name] = {
                "text_matches": text == old,
                "errno": err,
                "answer": answer,
                "reverted": reverted,
                "unchanged": control.command(f"read {addr:x} {size}") == text,
            }
        out["remaining"] = [c.id for c in control.listing()]
    out["cases"] = cases
    out["rmmod_fixture"] = _sh("rmmod ko_fixture")


def scenario_force_unload(out: Result, args: list[str]) -> None:
    """A live cut holds the module: rmmod refused; rmmod -f reverts it on the way out.

    ARGS: the path of knockout.ko (loaded again at the end).
    """
    with KernelTarget(ttl=60) as t:
        planned = plan_at(t, GETPPID, Return(42))
        original = t.read_text(planned.address, planned.size)
    real = os.getppid()
    out["refcnt_before"] = _sh("cat /sys/module/knockout/refcnt")[1]
    with Control() as control:
        err, answer = control.raw(
            f"cut {planned.address:x} {planned.old.hex()} {planned.new.hex()} 60000"
        )
        out["cut"] = (err, answer)
        cut_id = int(answer.removeprefix("id="))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            (listed,) = [c for c in control.listing() if c.id == cut_id]
            if listed.phase == "jmp":
                break
            time.sleep(0.02)
        out["phase"] = listed.phase
        out["stub"] = listed.stub
        out["site"] = control.command(f"read {planned.address:x} 5")
    out["during"] = os.getppid()
    out["refcnt_live"] = _sh("cat /sys/module/knockout/refcnt")[1]
    out["rmmod"] = _sh("rmmod knockout")
    out["still_loaded"] = os.path.exists("/proc/knockout")
    out["during_after_rmmod"] = os.getppid()
    out["rmmod_f"] = _sh("rmmod -f knockout")
    out["gone"] = not os.path.exists("/proc/knockout")
    out["after"] = os.getppid()
    out["real"] = real
    now = read_kcore(planned.address, planned.size)
    out["restored"] = now == original
    out["text_after"] = now.hex()
    out["original"] = original.hex()
    out["dmesg"] = _sh("dmesg | grep 'knockout:' | tail -4")[1]
    out["reload"] = _sh(f"insmod {args[0]}")


#: capability numbers (linux/capability.h)
CAP_SYS_MODULE, CAP_SYS_RAWIO = 16, 17


def _drop_caps(*caps: int) -> None:
    """Drop ``caps`` from this process's effective and permitted sets (capset(2))."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for cap in caps:
        data[cap // 32].effective &= ~(1 << (cap % 32))
        data[cap // 32].permitted &= ~(1 << (cap % 32))
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child (its capabilities die with it); its result or 'OSError N'."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def run() -> None:
        try:
            queue.put(fn())
        except OSError as exc:
            queue.put(f"OSError {exc.errno}")

    child = ctx.Process(target=run)
    child.start()
    result = queue.get(timeout=60)
    child.join(timeout=60)
    return result


def _open_without_module_caps() -> str:
    _drop_caps(CAP_SYS_MODULE, CAP_SYS_RAWIO)
    os.close(os.open("/proc/knockout", os.O_RDWR))
    return "opened"


def _write_after_dropping_caps() -> str:
    with Control() as control:
        first = control.raw("list")[0]
        _drop_caps(CAP_SYS_MODULE, CAP_SYS_RAWIO)
        return f"{first} {control.raw('list')[0]}"


def _kernel_functions(count: int) -> list[int]:
    """``count`` syscall entry points (``__x64_sys_*``), any that are text."""
    found: list[int] = []
    with open("/proc/kallsyms") as f:
        for line in f:
            address, kind, name = line.split()[:3]
            if kind in "tT" and name.startswith("__x64_sys_") and len(found) < count:
                found.append(int(address, 16))
    return found


def scenario_control(out: Result, args: list[str]) -> None:
    """The control file's boundary, its list, and the kprobe override's post_handler.

    - a process without CAP_SYS_MODULE and CAP_SYS_RAWIO cannot open it (CAP_SYS_ADMIN alone
      is not enough), and a descriptor opened with them is refused once its writer drops them;
    - 60 live cuts are all listed (the old fixed answer buffer held about 25);
    - a "kprobe ... pass" in the middle of a function is not jump-optimized (it has a
      post_handler: an optimized probe would ignore a "ret=" override's new ip).
    """
    out["open_without"] = _in_child(_open_without_module_caps)
    out["write_after_drop"] = _in_child(_write_after_dropping_caps)
    many = _kernel_functions(60)
    with Control() as control:
        ids = []
        for address in many:
            err, answer = control.raw(f"kprobe {address:x} pass 60000")
            if not err:
                ids.append(int(answer.removeprefix("id=")))
        listing = control.listing()
        out["kprobes"] = len(ids)
        out["listed"] = len(listing)
        out["listed_ids"] = sorted(c.id for c in listing) == sorted(ids)
        out["reverted"] = control.raw("revert all")
        with KernelTarget(ttl=30) as t:
            planned = plan_at(t, GETPPID, Return(42))
            middle = planned.address + planned.size  # an instruction boundary past the entry
        err, answer = control.raw(f"kprobe {middle:x} pass 60000")
        out["mid_kprobe"] = (err, answer)
        time.sleep(1.0)  # the kprobe optimizer runs after a few jiffies
        try:
            with open("/sys/kernel/debug/kprobes/list") as f:
                out["kprobe_list"] = [line.strip() for line in f if f"{middle:016x}" in line]
        except OSError as exc:
            out["kprobe_list"] = [f"unreadable: {exc}"]
        out["mid_reverted"] = control.raw("revert all")
        out["remaining"] = [c.id for c in control.listing()]


def _pingpong(cpu: int, rfd: int, wfd: int, serve: bool, stop: Any, counts: Any) -> None:
    """Bounce one byte with the partner on the other CPU: wakeups, enqueues, switches."""
    os.sched_setaffinity(0, {cpu})
    n = 0
    if serve:
        os.write(wfd, b"x")
    while not stop.is_set():
        if not os.read(rfd, 1):
            break
        os.write(wfd, b"x")
        n += 1
    counts.put(n)


def scenario_static_keys(out: Result, args: list[str]) -> None:
    """The kernel's own text_poke_bp users, hard, while both CPUs run the patched sites.

    Toggles the sched_schedstats static key (kernel.sched_schedstats) N times
    or for BUDGET seconds: every toggle rewrites each of its jump-label sites
    in the scheduler's hot paths through text_poke_bp's batch (INT3, sync,
    tail, sync, first byte, sync), while two processes pinned to CPU 0 and
    CPU 1 ping-pong a byte through pipes, so both vCPUs keep running through
    those sites (wakeup, enqueue, dequeue, switch).  The host side reads dmesg.
    """
    toggles = int(args[0]) if args else 20000
    budget = float(args[1]) if len(args) > 1 else 120.0
    progress = args[2] if len(args) > 2 else os.devnull  # toggles so far, if the guest hangs
    knob = "/proc/sys/kernel/sched_schedstats"
    with open(knob) as f:
        initial = f.read().strip()
    ctx = mp.get_context("fork")
    stop, counts = ctx.Event(), ctx.Queue()
    a_r, b_w = os.pipe()
    b_r, a_w = os.pipe()
    workers = [
        ctx.Process(target=_pingpong, args=(0, a_r, a_w, True, stop, counts)),
        ctx.Process(target=_pingpong, args=(1, b_r, b_w, False, stop, counts)),
    ]
    for w in workers:
        w.start()
    time.sleep(0.5)
    fd = os.open(knob, os.O_WRONLY)
    started = time.monotonic()
    done = 0
    try:
        while done < toggles and time.monotonic() - started < budget:
            os.pwrite(fd, b"1" if done % 2 == 0 else b"0", 0)
            done += 1
            if done % 100 == 0:
                with open(progress, "w") as f:
                    f.write(f"{done} {time.monotonic() - started:.1f}\n")
    finally:
        os.pwrite(fd, initial.encode(), 0)
        os.close(fd)
    elapsed = time.monotonic() - started
    stop.set()
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.kill()
    trips = []
    while not counts.empty():
        trips.append(counts.get())
    out.update(
        toggles=done,
        requested=toggles,
        seconds=elapsed,
        rate=done / elapsed,
        round_trips=trips,
        workers_exit=[w.exitcode for w in workers],
    )


def _kallsyms() -> dict[str, tuple[int, str]]:
    syms: dict[str, tuple[int, str]] = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            a, kind, name = line.split()[:3]
            syms.setdefault(name, (int(a, 16), kind))
    return syms


def scenario_hostile(out: Result, args: list[str]) -> None:
    """Malformed and hostile commands: every one refused, no byte written."""
    count = int(args[0]) if args else 10000
    rng = random.Random(4)
    syms = _kallsyms()
    with KernelTarget(ttl=30) as t:
        planned = plan_at(t, GETPPID, Return(42))
        insns = _insns(t, GETPPID)
        fn = t.symbols().lookup(GETPPID)
        watch = {
            name: (syms[name][0], 64)
            for name in (GETPPID, UMASK, "exc_int3", "poke_int3_handler", "text_poke_bp")
            if name in syms
        }
        ko_text = syms["ko_write"][0]  # knockout's own text (its proc_ops write)
        before = {n: t.read_text(a, s).hex() for n, (a, s) in watch.items()}
        A, old, new = planned.address, planned.old.hex(), planned.new.hex()
        mid = next(i.address + 1 for i in insns if i.address > A and i.size > 1)
        data_addr = syms["jiffies_64"][0] if "jiffies_64" in syms else syms["init_task"][0]

        def h(n: int) -> str:
            return "".join(rng.choice("0123456789abcdef") for _ in range(n))

        makers: list[Callable[[], bytes | str]] = [
            lambda: f"cut {A:x} {old[:-1]} {new[:-1]} 100",  # odd hex
            lambda: f"cut {A:x} {old} {new[:-2]} 100",  # lengths differ
            lambda: f"cut {A:x} {old[:-2]}zz {new} 100",  # bad hex
            lambda: f"cut {A:x} {h(len(old))} {new} 100",  # wrong old bytes
            lambda: f"cut {mid:x} {h(10)} {h(10)} 100",  # mid-instruction
            lambda: f"cut {A + 1:x} {old} {new} 100",  # shifted by one
            lambda: f"cut {data_addr:x} {h(10)} {h(10)} 100",  # data, not text
            lambda: f"cut {rng.randrange(1 << 47):x} {h(10)} {h(10)} 100",  # user space
            lambda: f"cut {rng.getrandbits(64):x} {h(10)} {h(10)} 100",  # anywhere
            lambda: f"cut {A:x} {old * 4} {new * 4} 100",  # too long
            lambda: f"cut {A:x} {old} {new} 0",  # ttl 0
            lambda: f"cut {A:x} {old} {new} 99999999999",  # ttl huge
            lambda: f"cut {A:x} {old} {new} -5",  # ttl negative
            lambda: f"cut {A:x}  {old} {new} 100",  # double space
            lambda: f"cut {A:x} {old} {new} 100 extra",  # extra field
            lambda: f"cut {fn.address:x} {t.read_text(fn.address, 5).hex()} 9090909090 100",
            lambda: f"cut {ko_text:x} {'cc' * 5} {'90' * 5} 100",  # own text
            lambda: f"cut {watch.get('exc_int3', (A, 0))[0]:x} {h(10)} {h(10)} 100",
            lambda: f"read {A:x} {rng.randrange(4097, 1 << 31)}",  # huge length
            lambda: f"read {A:x} 0",
            lambda: f"read {data_addr:x} 16",
            lambda: f"read {rng.randrange(1 << 47):x} 16",
            lambda: f"read ffffffffffffffff {rng.randrange(2, 4096)}",  # wraps
            lambda: f"renew {rng.randrange(1 << 32)} 100",
            lambda: f"renew 1 {rng.choice(['0', '-1', 'x', '', '99999999999'])}",
            lambda: f"revert {rng.randrange(1 << 32)}",
            lambda: f"revert {rng.choice(['-1', 'al', 'ALL', '1 2', '', '0x1'])}",
            lambda: rng.choice(["", " ", "\n", "list extra", "cut", "read", "revert", "renew"]),
            lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))),
            lambda: "x" * rng.randrange(300, 5000),
            lambda: f"cut {A:x} {old} {new} 100\0junk",
            # NEW with an indirect call, and with a rel32 jmp aimed inside the range
            lambda: f"cut {A:x} {old} {'ffd0' + new[4:]} 100",
            lambda: f"cut {A:x} {old} {'e9fdffffff' + new[10:]} 100",
        ]
        refused = accepted = 0
        accepted_examples: list[str] = []
        errnos: dict[str, int] = {}
        with Control() as control:
            for i in range(count):
                command = makers[i % len(makers)]()
                try:
                    err, answer = control.raw(command)
                except OSError as exc:
                    err, answer = exc.errno or -1, str(exc)
                if err:
                    refused += 1
                    errnos[str(err)] = errnos.get(str(err), 0) + 1
                else:
                    accepted += 1
                    if len(accepted_examples) < 5:
                        accepted_examples.append(repr(command)[:120] + " -> " + answer)
            # races: revert and renew of one cut from four threads at once
            race_ok = race_refused = 0
            revert_wins: list[int] = []  # per round: successful "revert ID", must be <= 1
            lock = threading.Lock()
            for _ in range(50):
                wins = [0]
                applied = t.apply(planned)
                barrier = threading.Barrier(4)

                def hit(cmd: str, barrier: threading.Barrier, wins: list[int]) -> None:
                    nonlocal race_ok, race_refused
                    with Control() as c:
                        barrier.wait()
                        for _ in range(5):
                            e, _ = c.raw(cmd)
                            with lock:
                                if e:
                                    race_refused += 1
                                else:
                                    race_ok += 1
                                    wins[0] += cmd.startswith("revert ") and cmd != "revert all"

                cid = applied.handle
                threads = [
                    threading.Thread(target=hit, args=(f"revert {cid}", barrier, wins)),
                    threading.Thread(target=hit, args=(f"revert {cid}", barrier, wins)),
                    threading.Thread(target=hit, args=(f"renew {cid} 100", barrier, wins)),
                    threading.Thread(target=hit, args=("revert all", barrier, wins)),
                ]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                revert_wins.append(wins[0])
                t.forget(cid)  # the races reverted it behind the target's back
            listed = control.listing()
        after = {n: t.read_text(a, s).hex() for n, (a, s) in watch.items()}
        out.update(
            count=count,
            refused=refused,
            accepted=accepted,
            accepted_examples=accepted_examples,
            errnos=errnos,
            unchanged=before == after,
            changed=[n for n in before if before[n] != after[n]],
            remaining=[c.id for c in listed],
            race_ok=race_ok,
            race_refused=race_refused,
            revert_wins=revert_wins,
        )


SCENARIOS = {
    "intents": scenario_intents,
    "stress": scenario_stress,
    "sigkill": scenario_sigkill,
    "hostile": scenario_hostile,
    "cli": scenario_cli,
    "stuck": scenario_stuck,
    "static_keys": scenario_static_keys,
    "refusals": scenario_refusals,
    "force_unload": scenario_force_unload,
    "control": scenario_control,
}


def main(argv: list[str]) -> int:
    name, path, *rest = argv
    out: Result = {"scenario": name}
    try:
        SCENARIOS[name](out, rest)
    finally:
        with open(path, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    ctypes.CDLL(None)  # the guest's libc is there: fail early if not
    sys.exit(main(sys.argv[1:]))
