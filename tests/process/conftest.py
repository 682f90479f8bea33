"""Fixtures for the process tier: a C program compiled here, run, cut, observed.

These tests need ptrace on the host (root, or CAP_SYS_PTRACE, and a Yama
scope that allows it) and gcc.  Without them they skip and say why;
KNOCKOUT_FORCE_PROCESS_TESTS=1 turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from knockout.asm import Insn, disasm
from knockout.elf import open_elf
from knockout.journal import Journal

SOURCE = Path(__file__).with_name("target.c")
#: what every worker reports when nothing is cut: compute(7), outer(7), flagged()
NORMAL = (22, 1049, 1)


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "process cuts need Linux"
    if shutil.which("gcc") is None:
        return "gcc is not installed (make setup installs it)"
    if os.geteuid() != 0:
        return "process cuts of another process need root (or CAP_SYS_PTRACE); run as root"
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except OSError:
        scope = 0
    if scope == 3:
        return "ptrace is disabled (kernel.yama.ptrace_scope=3) until reboot"
    return _probe_seize()


def _probe_seize() -> str | None:
    """Seize a child for real: seccomp or an LSM may refuse ptrace even to root."""
    from knockout import ptrace

    child = subprocess.Popen(["sleep", "30"])
    try:
        ptrace.seize(child.pid)
    except OSError as exc:
        return f"PTRACE_SEIZE is refused here ({exc.strerror}; seccomp or an LSM?)"
    finally:
        child.kill()
        child.wait()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.fspath)).parents]
    reason = _why_not() if mine else None
    for item in mine:
        item.add_marker(pytest.mark.process)
        if reason and not os.environ.get("KNOCKOUT_FORCE_PROCESS_TESTS"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """target.c built with gcc -O2 -g, without frame pointers."""
    out = tmp_path_factory.mktemp("bin") / "target"
    subprocess.run(
        ["gcc", "-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o", str(out), str(SOURCE)],
        check=True,
    )
    return out


@pytest.fixture(autouse=True)
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Journal:
    """A journal of this test's own (also for the knockout subprocesses it runs)."""
    directory = tmp_path / "journal"
    monkeypatch.setenv("KNOCKOUT_JOURNAL_DIR", str(directory))
    return Journal(directory)


@dataclass
class Program:
    """A running target program; :meth:`sample` returns every worker's results."""

    proc: subprocess.Popen[str]
    binary: Path
    #: SIGALRMs the program had handled at the last sample (mode "alarm")
    alarms: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sample(self) -> list[tuple[int, ...]]:
        """Ask for one fresh result per worker (calls started after this request)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"target exited with status {self.proc.wait()}"
        words = line.split()
        extra = dict(w.split("=") for w in words if "=" in w)
        self.alarms = int(extra.get("alarms", 0))
        return [tuple(int(v) for v in w.split(",")) for w in words if "=" not in w]

    def function(self, name: str) -> tuple[int, bytes]:
        """Link-time address and bytes of function ``name`` in the ELF file."""
        elf = open_elf(str(self.binary))
        (sym,) = [s for s in elf.text_symbols() if s.name == name]
        return sym.address, elf.read(sym.address, sym.size)

    def insns(self, name: str) -> list[Insn]:
        """The function's instructions, at offsets from 0."""
        _, code = self.function(name)
        return disasm(code, os.uname().machine, vma=0)

    def runtime_offset(self) -> int:
        """Runtime minus link-time address of the program's code and data (the PIE bias)."""
        for line in Path(f"/proc/{self.pid}/maps").read_text().splitlines():
            fields = line.split()
            if fields[-1] == str(self.binary) and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
        raise AssertionError(f"{self.binary} not mapped in pid {self.pid}")

    def data_symbol(self, name: str) -> int:
        """The runtime address of data symbol ``name``."""
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        with open(self.binary, "rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection), f"{self.binary} has no .symtab"
            (sym,) = symtab.get_symbol_by_name(name) or []
            return int(sym["st_value"]) + self.runtime_offset()


@pytest.fixture
def start(binary: Path) -> Iterator[Callable[..., Program]]:
    """``start(threads, mode="")`` runs the target; every program is killed afterwards."""
    running: list[subprocess.Popen[str]] = []

    def _start(threads: int, mode: str = "") -> Program:
        argv = [str(binary), str(threads), *([mode] if mode else [])]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.nice(10),  # be gentle with the shared cores
        )
        running.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return Program(proc, binary)

    yield _start
    for proc in running:
        proc.kill()
        proc.wait()


def run_knockout(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m knockout ARGS`` with this test's journal."""
    return subprocess.run(
        [sys.executable, "-m", "knockout", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
