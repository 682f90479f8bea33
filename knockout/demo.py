"""``knockout demo``: the seed incident, reproduced in the guest and diagnosed, in one command.

The story of ``/work/shared/seed/README.md`` told by knockout itself, on the
kernel the guest boots (Debian's 6.1, by default with the seed's
``cgroup.memory=nokmem``):

1. **the symptom**: a pod memcg under ``memory.max``, an anonymous-memory
   workload reading files whose page cache does not fit, no swap, and N
   child memcgs (:mod:`knockout.workloads.memcg_storm`).  The same workload
   with no children is measured first: that is healthy, and it is the
   healthy level of every verdict;
2. **the seed's four cuts** on this kernel's code, found by knockout from the
   debug vmlinux's lines (:mod:`knockout.seedcuts`), each judged by a trial
   on sys CPU, with the workers' read rate as ``--work`` and the pod as
   ``--cgroup``;
3. **the climb** from the hot stack, with the cost split per frame;
4. **the remedy** the seed's follow-ups found -- more room in the pod's
   ``memory.max`` -- judged the same way (a reversible write as the arm);
5. **the text**: every cut function's bytes read again and compared with
   what they were before, and with the debug vmlinux.

Everything printed is what this run measured.  The guest part runs as one
Python process in the guest (:func:`guest_main`, ``python -m knockout.demo
guest``); the host part (:func:`run_demo`) boots the guest, streams its
progress and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from knockout.errors import BadInput, KnockoutError

__all__ = ["DemoOptions", "guest_main", "run_demo"]


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of a demo run; the defaults fit this machine (2 cores, TCG)."""

    children: int = 3000
    kmem: bool = False  # the seed ran with cgroup.memory=nokmem
    window: float = 1.5
    windows: int = 16
    measure_windows: int = 4
    max_frames: int = 5
    remedy_mib: int = 256  # room added to pod/memory.max by the remedy
    out: Path = Path("demo-out")
    timeout: float = 3600.0  # seconds the guest part may take


# --- inside the guest -------------------------------------------------------------------


class _Clock:
    """Seconds per phase, for bench/out/demo.json; ``on_phase_end`` runs after each phase."""

    def __init__(self, on_phase_end: Callable[[], None] = lambda: None) -> None:
        self.phases: dict[str, float] = {}
        self._began = time.monotonic()
        self._on_phase_end = on_phase_end

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        began = time.monotonic()
        say(f"== {name}")
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - began, 2)
            self._on_phase_end()


def say(text: str) -> None:
    """A progress line on the guest's stdout (streamed to the host)."""
    print(text, flush=True)


def _modules_tree() -> str:
    release = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    return f"/lib/modules/{release}/kernel"


def _hide_modules() -> None:
    """An empty tmpfs over the modules tree: perf would read every .ko over 9p (minutes)."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", _modules_tree()], check=False
    )


@contextlib.contextmanager
def _modules_shown() -> Iterator[None]:
    """The modules tree visible again for a while (modprobe brd), hidden after."""
    subprocess.run(["umount", _modules_tree()], check=False)
    try:
        yield
    finally:
        _hide_modules()


def _measured(storm: Any, windows: int, seconds: float) -> dict[str, Any]:
    samples = [asdict(storm.measure(seconds)) for _ in range(windows)]
    return {
        "windows": samples,
        "sys_pct": statistics.median(s["sys_pct"] for s in samples),
        "reclaim_events_per_s": statistics.median(s["reclaim_events_per_s"] for s in samples),
        "read_mb_s": statistics.median(s["read_mb_s"] for s in samples),
    }


def _text_of(target: Any, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        symbol = target.symbols().lookup(name)
        out[name] = target.read_text(symbol.address, symbol.size).hex()
    return out


def guest_main(
    options: DemoOptions, save: Callable[[dict[str, Any]], None] = lambda doc: None
) -> dict[str, Any]:
    """Everything the demo does inside the guest; returns the document the host reports.

    ``save`` is given the document as it stands after every phase, so a run
    that dies (a hung guest, a timeout) still leaves what it measured.
    """
    from knockout.report.target import describe_kernel
    from knockout.targets.kernel import KernelTarget
    from knockout.trial import TrialConfig
    from knockout.workloads.memcg_storm import MemcgStorm, StormConfig

    doc: dict[str, Any] = {
        "options": {**asdict(options), "out": str(options.out)},
        "target_info": describe_kernel(),
    }
    clock = _Clock(lambda: save({**doc, "phases": clock.phases}))
    storms = [MemcgStorm(replace(StormConfig(), children=options.children))]
    storm = storms[0]

    def fresh_storm() -> Any:
        """The storm torn down and built again: a cut may have left the pod changed for good."""
        storms[-1].teardown()
        storms.append(MemcgStorm(replace(StormConfig(), children=options.children)))
        with _modules_shown():  # the ramdisk is loaded again
            storms[-1].prepare()
        storms[-1].add_children(options.children)
        storms[-1].start_workers()
        return storms[-1]

    try:
        with clock.phase("set-up"):
            doc["storm_setup"] = storm.prepare()
            _hide_modules()
        with clock.phase("healthy baseline"):
            storm.start_workers()
            time.sleep(3)
            healthy = _measured(storm, options.measure_windows, options.window)
            storm.stop_workers()
        with clock.phase("the symptom"):
            doc["populate_s"] = storm.add_children(options.children)
            storm.start_workers()
            time.sleep(5)
            sick = _measured(storm, options.measure_windows, options.window)
        doc["symptom"] = {"healthy": healthy, "with_children": sick, **storm.kmem()}
        say(
            f"sys CPU {healthy['sys_pct']:.1f}% with 0 child memcgs, {sick['sys_pct']:.1f}% "
            f"with {options.children}; reclaim {healthy['reclaim_events_per_s']:.1f}/s -> "
            f"{sick['reclaim_events_per_s']:.1f}/s; read {healthy['read_mb_s']:.2f} -> "
            f"{sick['read_mb_s']:.2f} MB/s"
        )
        config = TrialConfig(
            windows=options.windows,
            window=options.window,
            healthy=healthy["sys_pct"],
            cgroup=str(storm.pod),
            work=f"metric:{storm.work_command()}",
            settle=0.3,
            # healthy was measured without perf; under TCG a call-graph recording costs
            # the guest 20-30 points of sys CPU, so the arms must not record either
            profile=False,
        )
        with KernelTarget(ttl=10.0) as target:
            _judge_everything(target, fresh_storm, config, options, clock, doc)
    finally:
        with clock.phase("teardown"):
            with contextlib.suppress(KnockoutError, OSError):
                storms[-1].stop_workers()
            doc["teardown"] = storms[-1].teardown()
    doc["phases"] = clock.phases
    return doc


def _judge_everything(
    target: Any,
    fresh_storm: Callable[[], Any],
    config: Any,
    options: DemoOptions,
    clock: _Clock,
    out: dict[str, Any],
) -> None:
    """The seed's cuts, the climb, the remedy and the text check, each written into ``out``."""
    from knockout.changes import Write
    from knockout.measure.symptoms import SysShare
    from knockout.search.climb import ClimbConfig, climb
    from knockout.search.deny import DenyRules
    from knockout.seedcuts import seed_cuts
    from knockout.trial import run_trial

    with clock.phase("finding the seed's cuts"):
        cuts = seed_cuts(target)
    names = sorted({c.cut.location.split("+")[0] for c in cuts if c.cut is not None})
    before = _text_of(target, names)
    out["seed_cuts"] = []
    for i, seed in enumerate(cuts, 1):
        entry: dict[str, Any] = {"seed": seed.as_json(), "trial": None}
        out["seed_cuts"].append(entry)
        if seed.cut is None:
            say(f"seed cut {i} ({seed.name}): not made: {seed.refusal}")
            continue
        with clock.phase(f"trial {i}: {seed.name}"):
            result = run_trial(target, [seed.cut], SysShare(), config)
            entry["trial"] = result.as_dict()
        say(f"seed cut {i} ({seed.name}): {result.verdict}: {result.reason}")
    with clock.phase("climb"):
        climbed = climb(
            target,
            SysShare(),
            ClimbConfig(trial=config, profile_seconds=4.0, max_frames=options.max_frames),
            deny=DenyRules.builtin("kernel"),
            progress=lambda fr, phase: say(f"  climb: {fr.line()}") if phase != "trial" else None,
        )
        out["climb"] = climbed.as_dict()
    say(f"climb: {climbed.conclusion()}")
    with clock.phase("a fresh storm for the remedy"):
        # the climb's cuts may leave the pod changed for good (an OOM kill, charges skipped)
        storm = fresh_storm()
        time.sleep(5)
        out["symptom_before_remedy"] = again = _measured(
            storm, options.measure_windows, options.window
        )
    say(
        f"a fresh storm: sys CPU {again['sys_pct']:.1f}%, "
        f"reclaim {again['reclaim_events_per_s']:.1f}/s"
    )
    limit = storm.pod / "memory.max"
    room = int(limit.read_text()) + options.remedy_mib * 1024 * 1024
    with clock.phase("remedy"):
        remedy = run_trial(target, [], SysShare(), config, writes=[Write(limit, str(room))])
        out["remedy"] = remedy.as_dict()
    say(f"remedy ({options.remedy_mib} MiB more room): {remedy.verdict}: {remedy.reason}")
    after = _text_of(target, names)
    from knockout.textcheck import check_functions, vmlinux_clause

    with clock.phase("the text against the debug vmlinux"):
        addresses = {n: target.symbols().lookup(n).address for n in names}
        vmlinux = check_functions({n: (addresses[n], bytes.fromhex(after[n])) for n in names})
    out["text"] = {
        "functions": names,
        "identical": before == after,
        "before": before,
        "after": after,
        "vmlinux": vmlinux,
    }
    say(
        f"text of {', '.join(names)}: "
        + ("identical to before the cuts" if before == after else "CHANGED")
        + f"; {vmlinux_clause(vmlinux)}"
    )


def _guest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m knockout.demo")
    sub = p.add_subparsers(dest="where", required=True)
    g = sub.add_parser("guest", help="run the demo's guest part (as root, in the guest)")
    for name, kind in (
        ("children", int),
        ("window", float),
        ("windows", int),
        ("measure-windows", int),
        ("max-frames", int),
        ("remedy-mib", int),
    ):
        g.add_argument(
            f"--{name}", type=kind, default=getattr(DemoOptions(), name.replace("-", "_"))
        )
    g.add_argument("--kmem", action="store_true")
    g.add_argument("--json", required=True, help="write the document here")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m knockout.demo guest --json FILE [sizes]``."""
    args = _guest_parser().parse_args(argv)
    options = DemoOptions(
        children=args.children,
        kmem=args.kmem,
        window=args.window,
        windows=args.windows,
        measure_windows=args.measure_windows,
        max_frames=args.max_frames,
        remedy_mib=args.remedy_mib,
    )
    document = Path(args.json)
    doc = guest_main(options, save=lambda partial: _write_atomically(document, partial))
    _write_atomically(document, doc)
    return 0


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    """``doc`` as JSON at ``path``: a reader sees the old document or the new one, whole."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(doc, indent=1) + "\n")
    partial.replace(path)


# --- on the host --------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What the demo measured (the guest's document) and what the host added."""

    doc: dict[str, Any]
    phases: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def run_demo(
    options: DemoOptions, *, on_output: Callable[[bytes], None] | None = None
) -> DemoResult:
    """Boot the guest, run :func:`guest_main` there, and write the report on the host."""
    from knockout.seedcuts import seed_kernel
    from knockout.targets.kernel import build_module
    from knockout.vm import GuestSession, kernel_release, patching_accel
    from knockout.workloads.memcg_storm import build_helper

    if options.children < 1:
        raise BadInput("--children: give at least 1 child memcg (the symptom needs them)")
    phases: dict[str, float] = {}
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    kernel = seed_kernel()
    began = time.monotonic()
    build_module(kernel_release(kernel))
    build_helper()
    phases["host set-up"] = round(time.monotonic() - began, 2)
    args = ["cgroup.memory=nokmem"] if not options.kmem else []
    session = GuestSession(
        kernel=kernel, kernel_args=args, rwdirs=[out], mem="4G", accel=patching_accel()
    )
    document = out / "demo.json"
    document.unlink(missing_ok=True)
    sizes = (
        f"--children {options.children} --window {options.window:g} --windows {options.windows} "
        f"--measure-windows {options.measure_windows} --max-frames {options.max_frames} "
        f"--remedy-mib {options.remedy_mib}" + (" --kmem" if options.kmem else "")
    )
    here = Path(__file__).resolve().parent.parent
    try:
        with session:
            phases["boot"] = round(session.boot_seconds, 2)
            result = session.run(
                f"cd {here} && {sys.executable} -m knockout.demo guest {sizes} --json {document}",
                timeout=options.timeout,
                on_output=on_output,
            )
    except KnockoutError as exc:
        raise KnockoutError(f"{exc}{_kept(document)}") from exc
    doc = json.loads(document.read_text()) if document.exists() else {}
    if result.returncode != 0 or "text" not in doc:
        raise KnockoutError(
            f"the demo failed in the guest (status {result.returncode}); its output is above, "
            f"the console log in {session.console_log}{_kept(document)}"
        )
    phases.update(doc.get("phases", {}))
    began = time.monotonic()
    report = _report(doc, out / "report")
    phases["report"] = round(time.monotonic() - began, 2)
    doc["phases"] = phases
    document.write_text(json.dumps(doc, indent=1) + "\n")
    return DemoResult(doc, phases, report)


def _kept(document: Path) -> str:
    """What a failed run left: the phases its partial document holds."""
    if not document.exists():
        return ""
    phases = json.loads(document.read_text()).get("phases", {})
    return f"; what it measured in {', '.join(phases) or 'no phase'} is in {document}"


def _report(doc: dict[str, Any], directory: Path) -> Path:
    """The climb's report (its frames carry their trials) and one per seed cut and the remedy."""
    from knockout.report import write_report

    info = doc.get("target_info")
    write_report(doc["climb"], directory, target_info=info)
    for i, entry in enumerate(doc["seed_cuts"], 1):
        if entry["trial"] is not None:
            write_report(entry["trial"], directory / f"seed-cut-{i}", target_info=info)
    write_report(doc["remedy"], directory / "remedy", target_info=info)
    return directory


if __name__ == "__main__":
    sys.exit(main())
