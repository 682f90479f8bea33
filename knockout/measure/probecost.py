"""What a probe hit costs, measured: the same loop of calls run with and without probes.

Counting calls is not free: every uprobe hit traps into the kernel (and, at
an instruction it cannot emulate, single-steps a copy of it), every kprobe
hit runs a handler.  The cost per hit decides how long a counting window may
be and how much a count perturbs what it counts, so knockout measures it
rather than quoting it: a small C program (:data:`CALIBRATOR`, built with
:func:`build_calibrator`) makes N calls -- of a leaf function, of
``getppid()``, of ``poll()`` over K descriptors -- after it reads one byte on
stdin, and prints the thread CPU time they took; :func:`uprobe_cost` and
:func:`kprobe_cost` run it bare and probed (best of a few runs each) and
divide the extra time by the hits counted.

The same program is the ground truth of the counting tests: it makes
exactly N calls (``getppid``: N syscalls; ``poll``: N polls that each look
up K descriptors, so the lookup's call site has fan-out K).

>>> [m.name for m in MODES]
['leaf', 'getppid', 'poll']
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knockout.errors import BadInput, NotFound
from knockout.measure.calls import counts_between, ns_per_hit, probing

__all__ = [
    "CALIBRATOR",
    "MODES",
    "ProbeCost",
    "build_calibrator",
    "call_site_offsets",
    "kprobe_cost",
    "run_calibrator",
    "start_calibrator",
    "uprobe_cost",
]

#: the calibrator's source: ``calibrator MODE N [K]``
CALIBRATOR = r"""
/* knockout's probe-cost calibrator: MODE N [K].  Says "ready", waits for one byte
 * on stdin, makes N calls, prints the thread CPU time they took in ns, exits. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile long sink;

/* the probed leaf, and the loop whose call site calls it */
__attribute__((noipa)) void leaf(long i) { sink += i; }
__attribute__((noipa)) void leaf_loop(long n) { for (long i = 0; i < n; i++) leaf(i); }

static void getppid_loop(long n) { for (long i = 0; i < n; i++) syscall(SYS_getppid); }

static int poll_loop(long n, int k) {
    int p[2];
    struct pollfd *fds = calloc(k, sizeof(*fds));
    if (!fds || pipe(p) != 0) return -1;
    for (int i = 0; i < k; i++) { fds[i].fd = p[0]; fds[i].events = POLLIN; }
    for (long i = 0; i < n; i++) if (poll(fds, k, 0) != 0) return -1;
    return 0;
}

static long long cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    char c;
    if (argc < 3) { fprintf(stderr, "usage: %s leaf|getppid|poll N [K]\n", argv[0]); return 2; }
    long n = atol(argv[2]);
    int k = argc > 3 ? atoi(argv[3]) : 1;
    printf("ready\n");
    fflush(stdout);
    if (read(0, &c, 1) != 1) return 3;
    long long t0 = cpu_ns();
    if (!strcmp(argv[1], "leaf")) leaf_loop(n);
    else if (!strcmp(argv[1], "getppid")) getppid_loop(n);
    else if (!strcmp(argv[1], "poll")) { if (poll_loop(n, k)) return 4; }
    else return 2;
    printf("%lld\n", cpu_ns() - t0);
    return 0;
}
"""


@dataclass(frozen=True)
class Mode:
    """One of the calibrator's loops: what it calls N times."""

    name: str
    calls: str


MODES = (
    Mode("leaf", "leaf(i) from leaf_loop, N times"),
    Mode("getppid", "the getppid system call, N times"),
    Mode("poll", "poll() of K descriptors with timeout 0, N times"),
)


def build_calibrator(directory: Path) -> Path:
    """The calibrator built with gcc ``-O2 -fomit-frame-pointer`` in ``directory`` (once per
    source: the name holds its hash)."""
    digest = hashlib.sha256(CALIBRATOR.encode()).hexdigest()[:12]
    binary = directory / f"calls-calibrator-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NotFound("gcc is needed to build the probe-cost calibrator; apt-get install gcc")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"calls-calibrator-{digest}.c"
    source.write_text(CALIBRATOR)
    tmp = binary.with_suffix(".tmp")
    subprocess.run(
        [gcc, "-O2", "-fomit-frame-pointer", "-Wall", "-o", str(tmp), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    tmp.replace(binary)
    return binary


def start_calibrator(binary: Path, mode: str, n: int, k: int = 1) -> subprocess.Popen[bytes]:
    """The calibrator started and in its ``main`` (its files are mapped, so probe points
    resolve), waiting for the byte that starts its loop."""
    if mode not in {m.name for m in MODES}:
        raise BadInput(
            f"no calibrator mode {mode!r}; use one of {', '.join(m.name for m in MODES)}"
        )
    process = subprocess.Popen(
        [str(binary), mode, str(n), str(k)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        process.kill()
        process.wait()
        raise BadInput(f"the calibrator {binary} did not start (exit {process.returncode})")
    return process


def run_calibrator(process: subprocess.Popen[bytes]) -> float:
    """Start the loop of a started calibrator, wait for it; the CPU seconds the loop took."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"g")
    process.stdin.close()
    out = process.stdout.read()
    if process.wait() != 0:
        raise BadInput(f"the calibrator failed (exit {process.returncode}); rebuild it")
    return int(out) / 1e9


@dataclass(frozen=True)
class ProbeCost:
    """The measured cost of one probe hit at ``point`` (``mechanism``: uprobe or kprobe)."""

    point: str
    mechanism: str
    calls: int  # the loop's calls per run
    hits: int  # hits counted in the probed run
    plain_s: float  # the loop's CPU time, bare (best run)
    probed_s: float  # and probed (best run)
    ns_per_hit: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "point": self.point,
            "mechanism": self.mechanism,
            "calls": self.calls,
            "hits": self.hits,
            "plain_s": round(self.plain_s, 6),
            "probed_s": round(self.probed_s, 6),
            "ns_per_hit": self.ns_per_hit,
        }


def _plain(binary: Path, mode: str, n: int, runs: int) -> float:
    return min(run_calibrator(start_calibrator(binary, mode, n)) for _ in range(runs))


def _probed_uprobe(binary: Path, point: str, n: int) -> tuple[float, int]:
    process = start_calibrator(binary, "leaf", n)
    try:
        with probing([point], pid=process.pid) as probes:
            start = probes.read()
            seconds = run_calibrator(process)
            hits = counts_between(start, probes.read(), probes.target, "uprobe").calls(point)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return seconds, hits


def uprobe_cost(binary: Path, n: int = 200_000, runs: int = 3) -> list[ProbeCost]:
    """The cost of a uprobe hit at a function entry (``leaf``) and at a call site (the call
    of ``leaf`` in ``leaf_loop``), in the calibrator ``binary``."""
    site = call_site_offsets(str(binary), "leaf_loop", "leaf")
    if len(site) != 1:
        raise NotFound(f"{binary}: expected one call of leaf in leaf_loop, found {len(site)}")
    plain = _plain(binary, "leaf", n, runs)
    out = []
    for point in ("leaf", f"leaf_loop+{site[0]:#x}"):
        best = min(_probed_uprobe(binary, point, n) for _ in range(runs))
        out.append(ProbeCost(point, "uprobe", n, best[1], plain, best[0], _ns(plain, best)))
    return out


def _ns(plain: float, probed: tuple[float, int]) -> float:
    return ns_per_hit(plain, probed[0], probed[1])


def kprobe_cost(
    binary: Path, points: Sequence[str], n: int = 20_000, runs: int = 3
) -> list[ProbeCost]:
    """The cost of a kprobe hit at each of ``points`` (on the path of ``getppid()``: its
    entry, a call site in it), from the calibrator's getppid loop."""
    plain = _plain(binary, "getppid", n, runs)
    out = []
    for point in points:
        best = min(_probed_kprobe(binary, point, n) for _ in range(runs))
        out.append(ProbeCost(point, "kprobe", n, best[1], plain, best[0], _ns(plain, best)))
    return out


def _probed_kprobe(binary: Path, point: str, n: int) -> tuple[float, int]:
    process = start_calibrator(binary, "getppid", n)
    try:
        with probing([point], kernel=True) as probes:
            start = probes.read()
            seconds = run_calibrator(process)
            hits = counts_between(start, probes.read(), probes.target, "kprobe").calls(point)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return seconds, hits


def call_site_offsets(elf_path: str, function: str, callee: str) -> list[int]:
    """Offsets in ``function`` of the direct calls of ``callee``, read from the ELF file.

    For a kernel, pass the (debug) vmlinux: the offsets hold in the running
    kernel, whatever its KASLR slide (call instructions are not patched at
    boot, unlike ftrace and static-call sites).
    """
    from knockout.asm import disasm
    from knockout.elf import open_elf
    from knockout.symbols import elf_symbols

    table = elf_symbols(elf_path)
    caller, target = table.lookup(function), table.lookup(callee)
    elf = open_elf(elf_path)
    arch = elf.arch
    code = elf.read(caller.address, caller.size)
    return [
        insn.address - caller.address
        for insn in disasm(code, arch, vma=caller.address)
        if arch.is_call(insn) and arch.branch_target(insn) == target.address
    ]
