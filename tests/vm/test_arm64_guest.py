"""The arm64 guest: Debian's arm64 kernel and userspace, knockout run inside it as on an arm64 box.

One boot for the whole module (fixture ``arm64_guest``: qemu-system-aarch64,
TCG, ``-M virt``, ``-cpu max``), over the root ``make setup`` prepared
(mk/arm64.mk, :mod:`knockout.vm.guestroot`).  Missing set-up is a failure,
never a skip.

- the guest runs Debian's arm64 kernel of the root's stamp, on a CPU with
  pointer authentication and BTI, and the kernel uses them;
- ``knockout`` is on PATH and runs *this* tree (shared read-only);
- ``knockout disasm shrink_slab --kernel`` shows the live arm64 kernel's
  instructions with ``<shrink_slab+N>`` offsets, as the seed's gdb listing
  did, and they are those of the kernel's own ``/proc/kcore``;
- knockout's module, cross-built here against Debian's arm64 headers, loads;
- the seed's kinds of cut on the arm64 kernel's ``do_shrink_slab`` through
  the CLI (issue 14): an ``ldr xN, [...]`` found in the live disassembly
  becomes ``mov xN, #0`` (the seed's 0xd280001c pattern), seen in
  ``/proc/kcore`` while held and gone after, bytes identical; the TTL
  dead-man switch reverts a cut whose knockout was SIGKILLed; "return 0 at
  the entry" (three words: ``mov x0, #0; autiasp; ret``) is refused, saying
  why (the module writes one word per cut);
- a selection of the process-cut tests (tests/process) passes inside, run by
  pytest: :data:`PROCESS_TESTS`.

Cost (TCG on a 2-core host): one boot of ~5 s; the whole module ran in
about 6 minutes.  Each ``knockout`` process costs ~8-13 s under TCG, so the
in-guest selection keeps the tests that exercise arm64 code paths (encoders,
ptrace registers and single-steps, stack/link-register scans, the journal's
bytes) and leaves out what is arch-independent and spawns many knockout
processes (argument errors, permission messages, trials' guardians); the
three files took 440 s.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from knockout.vm import GuestSession, build_initramfs, find_kernel, kernel_release
from knockout.vm._platform import ROOT_STAMP, get_platform, prepared_root
from knockout.vm._qemu import GuestConfig, qemu_command
from tests.vm.conftest import Guest

REPO = Path(__file__).resolve().parents[2]


def _arm64_root() -> Path:
    root = prepared_root(get_platform("arm64"))
    if root is None:
        raise AssertionError("this host is arm64: these tests are for a host of another arch")
    return root


ROOT = _arm64_root()
STAMP = json.loads((ROOT / ROOT_STAMP).read_text())
#: the process-cut tests run inside: every intent cut and reverted (8 threads),
#: a thousand cut/revert cycles with 8 threads stepped out of the cut, the refusal when a
#: thread would return into the cut (aarch64's link register), a torn write reverted;
#: the CLI's bytes and disassembly, a recycled pid never touched (the journal and
#: guardian are arch-independent); reaping a target killed while stopped.  (The trial and
#: verdict files measure windows of seconds each: most of an hour under TCG.)
PROCESS_TESTS = (
    "test_process_cut.py::test_each_intent_changes_output_and_revert_restores[8-threads]",
    "test_process_cut.py::test_thousand_cycles_with_eight_threads_running_through_the_cut",
    "test_process_cut.py::test_refuses_when_a_thread_would_return_into_the_cut",
    "test_process_cut.py::test_revert_after_a_torn_write_and_refusal_over_foreign_bytes",
    "test_process_cli.py::test_text_output_shows_address_bytes_and_disassembly",
    "test_process_cli.py::test_recycled_pid_is_never_touched",
    "test_process_reap.py::test_target_killed_while_stopped_is_reaped_by_its_parent",
)
#: one instruction word from /proc/kcore, in hex (knockout's own reader, not the module's)
KCORE_WORD = (
    "python3 -c 'import sys; from knockout.elf import read_kcore; "
    "print(read_kcore(int(sys.argv[1], 16), 4).hex())'"
)


# -- no boot -----------------------------------------------------------------


def test_the_roots_kernel_is_the_stamps_and_the_initramfs_is_arm64(tmp_path: Path) -> None:
    release = STAMP["release"]
    image = find_kernel(None, boot=ROOT / "boot", modules=ROOT / "lib/modules")
    assert kernel_release(image) == release  # from the Image's own banner
    initrd = build_initramfs(release, tmp_path, root=ROOT)
    names = set(
        subprocess.run(
            ["cpio", "-t", "--quiet"], input=initrd.read_bytes(), capture_output=True, check=True
        )
        .stdout.decode()
        .split()
    )
    assert {"init", "bin/busybox", "modules/9p.ko", "modules/overlay.ko"} <= names
    busybox = (ROOT / "bin/busybox").read_bytes()[:20]
    assert int.from_bytes(busybox[18:20], "little") == 183  # EM_AARCH64


def test_qemu_boots_virt_with_cpu_max_and_the_pl011(tmp_path: Path) -> None:
    session = GuestSession(arch="arm64")
    config = GuestConfig(
        kernel=session.kernel,
        initrd=tmp_path / "initrd",
        platform=session.platform,
        root=ROOT,
    )
    argv = qemu_command(config, ctl_dir=tmp_path, socket=tmp_path / "s", console=tmp_path / "c")
    assert Path(argv[0]).name == "qemu-system-aarch64"
    assert argv[argv.index("-M") + 1] == "virt,gic-version=3"
    assert argv[argv.index("-cpu") + 1] == "max,pauth-impdef=on"
    assert "console=ttyAMA0" in argv[argv.index("-append") + 1]
    fsdevs = [a for a in argv if a.startswith("local,id=")]
    assert f"local,id=koroot,path={ROOT},security_model=none,multidevs=remap,readonly=on" in (
        fsdevs
    )
    assert not any("kousr" in a for a in fsdevs)  # the root's own /usr, not the host's


# -- one arm64 guest -----------------------------------------------------------


def test_boots_debians_arm64_kernel_on_a_cpu_with_pac_and_bti(arm64_guest: Guest) -> None:
    out = arm64_guest.run("uname -m; uname -r; grep -m1 '^Features' /proc/cpuinfo").output
    machine, release, features = out.splitlines()
    assert machine == "aarch64"
    assert release == STAMP["release"] == arm64_guest.release
    flags = set(features.partition(":")[2].split())
    assert {"paca", "pacg", "bti"} <= flags, flags  # -cpu max: what the planner must respect
    print(f"\narm64 guest boot: {arm64_guest.boot_seconds[-1]:.1f} s to the first command")


def test_knockout_on_path_runs_this_tree(arm64_guest: Guest) -> None:
    source = REPO / "knockout" / "vm" / "_platform.py"
    out = arm64_guest.run(
        "command -v knockout; "
        "python3 -c 'import knockout, platform; print(knockout.__file__, platform.machine())'; "
        f"sha256sum /opt/knockout/tree/knockout/vm/_platform.py {source}"
    ).output.splitlines()
    assert out[0] == "/opt/knockout/venv/bin/knockout"
    module, machine = out[1].split()
    assert module == "/opt/knockout/tree/knockout/__init__.py" and machine == "aarch64"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert [line.split()[0] for line in out[2:]] == [digest, digest]
    help_text = arm64_guest.run("knockout --help").output
    assert "usage: knockout" in help_text and "disasm" in help_text


def test_disasm_shrink_slab_kernel_reads_the_live_arm64_kernel(arm64_guest: Guest) -> None:
    assert arm64_guest.run("test -r /proc/kcore", check=False).returncode == 0, "no /proc/kcore"
    listing = arm64_guest.run("knockout disasm shrink_slab --kernel", timeout=300).output
    rows = [
        (int(m["addr"], 16), int(m["off"] or "0", 0), m["insn"])
        for m in re.finditer(
            r"^(?:=>)?\s*0x(?P<addr>[0-9a-f]+) <shrink_slab(?:\+(?P<off>0x[0-9a-f]+|\d+))?>:"
            r"\s+(?:[0-9a-f]{2}\s){4}\s*(?:0x[0-9a-f]{8}\s+)?(?P<insn>.*)$",
            listing,
            re.M,
        )
    ]
    assert len(rows) > 20, listing
    addresses = [a for a, _, _ in rows]
    offsets = [o for _, o, _ in rows]
    assert offsets == list(range(0, 4 * len(rows), 4))  # one 32-bit word per instruction
    assert [a - addresses[0] for a in addresses] == offsets
    text = " ".join(insn for _, _, insn in rows)
    assert re.search(r"\bldr x\d+, \[x\d+", text) and re.search(r"\bret\b", text), listing
    # the start is kallsyms' shrink_slab, in the kernel's own symbol table
    kallsyms = arm64_guest.run("grep ' shrink_slab$' /proc/kallsyms").output.split()
    assert int(kallsyms[0], 16) == addresses[0]


def _module() -> Path:
    """knockout.ko cross-built for the root's arm64 kernel (cached by source hash)."""
    from knockout.arch import get_arch
    from knockout.targets.kernel import build_module

    release = STAMP["release"]
    kdir = Path("/var/cache/knockout/arm64-headers/root/usr/src") / f"linux-headers-{release}"
    if not (kdir / "Makefile").exists():
        pytest.fail(f"no arm64 headers at {kdir}; run make setup (mk/kernels.mk)", pytrace=False)
    return build_module(release, kdir=kdir, arch=get_arch("aarch64"))


def test_the_cross_built_module_loads(arm64_guest: Guest) -> None:
    ko = _module()
    out = arm64_guest.run(
        f"insmod {ko} && test -e /proc/knockout && grep -c . /proc/knockout; rmmod knockout",
        check=False,
    )
    assert out.returncode == 0, out.output
    arm64_guest.assert_dmesg_clean()


def test_process_cut_tests_pass_inside(arm64_guest: Guest) -> None:
    files = " ".join(f"tests/process/{name}" for name in PROCESS_TESTS)
    result = arm64_guest.run(
        f"python3 -m pytest -q -p no:cacheprovider --durations=5 {files}",
        cwd=str(REPO),
        env={"KNOCKOUT_FORCE_PROCESS_TESTS": "1"},
        timeout=1500,
        check=False,
    )
    summary = result.output.strip().splitlines()[-1:]
    print(f"\narm64 guest, tests/process: {summary} in {result.seconds:.0f} s")
    print("\n".join(line for line in result.output.splitlines() if " call " in line))
    assert result.returncode == 0, result.output[-6000:]
    assert " passed" in summary[0] and "skipped" not in summary[0]


def _held_cut(
    guest: Guest, spec: str, intent: str, address: int, stop: str
) -> dict[str, list[str]]:
    """``knockout cut SPEC --kernel INTENT`` held in the guest, then ``kill -<stop>`` of it.

    Returns the output's fields by first word: ``during`` (the word at
    ``address`` in /proc/kcore while held), ``held`` (active cuts the module
    lists then), ``after`` and ``left`` (the same once no cut is active, or
    60 s passed), ``json`` (knockout's events) and ``output``.
    """
    word = f"$({KCORE_WORD} {address:x})"
    script = f"""
        knockout cut {spec} --kernel {intent} --for 300 --json \
            >/tmp/cut.json 2>/tmp/cut.err </dev/null &
        pid=$!
        until grep -q '"applied"' /tmp/cut.json || ! kill -0 $pid 2>/dev/null; do sleep 0.2; done
        echo "during {word}"
        echo "held $(grep -c 'state=active' /proc/knockout)"
        kill -{stop} $pid; wait $pid
        n=0
        while grep -q 'state=active' /proc/knockout && [ $n -lt 300 ]; do
            sleep 0.2; n=$((n+1))
        done
        echo "after {word}"
        echo "left $(grep -c 'state=active' /proc/knockout)"
        sed 's/^/json /' /tmp/cut.json
        cat /tmp/cut.err
    """
    out = guest.run(script, timeout=600).output
    fields: dict[str, list[str]] = {"output": [out]}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        fields.setdefault(key, []).append(value)
    return fields


def test_the_seeds_cuts_on_the_arm64_kernel(arm64_guest: Guest) -> None:
    """Issue 14's "must show": the seed's kinds of cut on do_shrink_slab, with the module loaded."""
    from knockout.arch import get_arch
    from knockout.insn import joined

    arch = get_arch("aarch64")
    arm64_guest.run(f"grep -q '^knockout ' /proc/modules || insmod {_module()}")
    arm64_guest.dmesg_problems()  # from here on
    listing = arm64_guest.run("knockout disasm do_shrink_slab --kernel", timeout=300).output
    # the first 64-bit load of a field through a pointer (not the stack): a pointer it loads
    load = re.search(
        r"^\s*0x(?P<addr>[0-9a-f]+) <do_shrink_slab\+(?P<off>0x[0-9a-f]+)>:\s+(?:[0-9a-f]{2}\s){4}"
        r"\s*0x(?P<word>[0-9a-f]{8})\s+ldr (?P<reg>x(?:[0-9]|1[0-9]|2[0-8])), "
        r"\[x(?:[0-9]|1[0-9]|2[0-8])(?:, #0x[0-9a-f]+)?\]$",
        listing,
        re.M,
    )
    assert load, listing
    address, reg = int(load["addr"], 16), load["reg"]
    old = int(load["word"], 16).to_bytes(4, "little")
    new = joined(arch.set_register(reg, 0))  # knockout's own encoder: the seed's pattern
    assert int.from_bytes(new, "little") == 0xD2800000 | int(reg[1:])  # movz xN, #0
    spec = f"do_shrink_slab+{load['off']}"

    # held, then SIGTERM: knockout reverts
    held = _held_cut(arm64_guest, spec, f"--set {reg}=0", address, "TERM")
    out = held["output"][0]
    assert held["during"] == [new.hex()] and held["held"] == ["1"], out
    assert held["after"] == [old.hex()] and held["left"] == ["0"], out
    events = [json.loads(e) for e in held["json"]]
    assert [e["event"] for e in events] == ["applied", "reverted"], out
    assert events[0]["old"] == old.hex() and events[0]["new"] == new.hex(), out
    assert events[0]["after"] == [f"mov {reg}, #0"], out

    # the dead-man switch: knockout SIGKILLed, the module reverts the cut when its TTL lapses
    ttl = _held_cut(arm64_guest, spec, f"--set {reg}=0 --ttl 1", address, "KILL")
    out = ttl["output"][0]
    assert ttl["during"] == [new.hex()] and ttl["held"] == ["1"], out
    assert ttl["after"] == [old.hex()] and ttl["left"] == ["0"], out
    assert "TTL expired" in arm64_guest.run("dmesg | grep 'knockout: revert'").output

    # return 0 at the entry is three words here: refused, saying why
    ret0 = arm64_guest.run(
        "knockout cut shrink_slab --kernel --return 0 --for 1", check=False, timeout=300
    )
    assert ret0.returncode == 2, ret0.output
    assert "one 4-byte instruction per cut" in ret0.output, ret0.output
    assert "preempted between two" in ret0.output, ret0.output
    assert "--skip-call" in ret0.output  # and the one-word ways instead

    assert "state=active" not in arm64_guest.run("cat /proc/knockout").output
    arm64_guest.assert_dmesg_clean()
