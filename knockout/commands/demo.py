"""``knockout demo``: the shrink_slab incident reproduced in a guest and diagnosed, end to end.

Boots Debian's 6.1 kernel in QEMU (with the seed's ``cgroup.memory=nokmem``
unless ``--kmem``), reproduces the reclaim storm, measures healthy against
sick, judges the seed's four cuts, climbs the hot stack with its cost split,
judges the remedy (more room in the pod's ``memory.max``), checks the text
is as it was, and writes a report.  Every number and verdict printed is what
this run measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from knockout.report.save import check_writable, save_json
from knockout.spelling import parse_duration, parse_int
from knockout.textcheck import vmlinux_clause

__all__ = ["cmd_demo", "conclusion", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``knockout demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the seed incident (shrink_slab, thousands of memcgs) reproduced and diagnosed",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--children", default="3000", metavar="N", help="child memcgs (3000)")
    p.add_argument("--kmem", action="store_true", help="kmem accounting on (Debian's default)")
    p.add_argument("--window", default="1.5s", metavar="T", help="trial window (1.5s)")
    p.add_argument("--windows", default="16", metavar="N", help="at most N windows per arm (16)")
    p.add_argument("--max-frames", default="5", metavar="N", help="frames the climb judges (5)")
    p.add_argument("--timeout", default="60m", metavar="T", help="the guest part may take T (60m)")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="where the run is written")
    p.add_argument("--bench", metavar="FILE", help="also write the phases' times to FILE")
    p.add_argument("--json", action="store_true", help="print the whole document as JSON")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``knockout demo``."""
    from knockout.demo import DemoOptions, run_demo

    options = DemoOptions(
        children=parse_int(args.children),
        kmem=args.kmem,
        window=parse_duration(args.window),
        windows=parse_int(args.windows),
        max_frames=parse_int(args.max_frames),
        out=Path(args.out),
        timeout=parse_duration(args.timeout),
    )
    if args.bench:
        check_writable(args.bench)

    def stream(data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()

    result = run_demo(options, on_output=stream)
    doc = result.doc
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print("\n".join(summary(doc)))
        print(f"report: {result.report}/report.html (and report.md)")
    if args.bench:
        save_json(args.bench, bench_figures(doc))
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _trial_row(name: str, trial: dict[str, Any] | None, how: str) -> str:
    if trial is None:
        return f"| {name} | {how} | not made | - | - |"
    moved = [h["symbol"] for h in trial.get("profile_diff", []) if h["delta"] > 0.02][:2]
    return (
        f"| {name} | {how} | {trial['verdict']} | {_pct(trial.get('explained'))} | "
        f"{', '.join(moved) or '-'} |"
    )


def summary(doc: dict[str, Any]) -> list[str]:
    """The demo's output: the symptom, the seed's table, the climb, the remedy, the text."""
    symptom = doc["symptom"]
    healthy, sick = symptom["healthy"], symptom["with_children"]
    n = doc["options"]["children"]
    mode = "kmem on" if doc["options"]["kmem"] else "cgroup.memory=nokmem"
    lines = [
        f"the symptom ({mode}): sys CPU {healthy['sys_pct']:.1f}% with 0 child memcgs, "
        f"{sick['sys_pct']:.1f}% with {n}; reclaim events {healthy['reclaim_events_per_s']:.1f}"
        f"/s -> {sick['reclaim_events_per_s']:.1f}/s; the workers read "
        f"{healthy['read_mb_s']:.2f} -> {sick['read_mb_s']:.2f} MB/s",
        "",
        "| cut | bytes written | verdict | explained | heat moved to |",
        "|---|---|---|---|---|",
    ]
    for entry in doc["seed_cuts"]:
        seed, trial = entry["seed"], entry["trial"]
        how = f"`{seed['spec']}` {seed.get('intent') or ''}".strip()
        if trial is not None and trial["cuts"]:
            how += f" ({trial['cuts'][0]['old']} -> {trial['cuts'][0]['new']})"
        lines.append(_trial_row(seed["name"], trial, how))
    remedy = doc["remedy"]
    write = remedy["writes"][0] if remedy["writes"] else {"path": "?", "value": "?"}
    lines.append(_trial_row("remedy: more room", remedy, f"{write['path']} = {write['value']}"))
    lines += ["", "climb (leaf first):"]
    for frame in doc["climb"]["frames"]:
        split = ""
        if frame.get("calls_per_s"):
            fan = ", ".join(f"{k} x{v:.3g}" for k, v in frame["fanout"].items())
            split = f"  [{frame['calls_per_s']:.3g} calls/s{'; ' + fan if fan else ''}]"
        lines.append(f"  {frame['line']}{split}")
    lines += ["", conclusion(doc)]
    text = doc["text"]
    lines.append(
        f"the text of {', '.join(text['functions'])} after every cut: "
        + ("byte for byte what it was before" if text["identical"] else "NOT what it was")
        + f", and {vmlinux_clause(text.get('vmlinux'))}"
    )
    return lines


def conclusion(doc: dict[str, Any]) -> str:
    """One paragraph computed from the verdicts of this run (no verdict is written here)."""
    seeds = [e for e in doc["seed_cuts"] if e["trial"] is not None]
    gone = [e["seed"]["name"] for e in seeds if e["trial"]["verdict"] == "gone"]
    remedy = doc["remedy"]
    climb = doc["climb"]
    parts = []
    if seeds and not gone:
        verdicts = ", ".join(
            f"{e['seed']['name']}: {e['trial']['verdict']} ({_pct(e['trial'].get('explained'))})"
            for e in seeds
        )
        parts.append(f"None of the seed's cuts brings sys CPU back to healthy ({verdicts}).")
    elif gone:
        parts.append(f"The seed's cut {gone[0]} brings sys CPU back to healthy.")
    parts.append(f"The climb: {climb['conclusion']}.")
    parts.append(
        f"The remedy ({remedy['writes'][0]['path'] if remedy['writes'] else '?'}): "
        f"{remedy['verdict']}, {_pct(remedy.get('explained'))} of the excess explained."
    )
    if remedy["verdict"] == "gone" and not gone:
        parts.append(
            "So the cost is not in any one function the seed cut: it is made by how often "
            "reclaim runs and how much each pass walks, and giving the pod room removes it."
        )
    return " ".join(parts)


def bench_figures(doc: dict[str, Any]) -> dict[str, Any]:
    """bench/out/demo.json: time per phase, windows per verdict, the symptom's figures."""
    trials = [e["trial"] for e in doc["seed_cuts"] if e["trial"]] + [doc["remedy"]]
    trials += [f["trial"] for f in doc["climb"]["frames"] if f.get("trial")]
    return {
        "bench": "demo",
        "options": doc["options"],
        "phases_s": doc["phases"],
        "total_s": round(sum(doc["phases"].values()), 1),
        "symptom": {
            k: {m: v for m, v in doc["symptom"][k].items() if m != "windows"}
            for k in ("healthy", "with_children")
        },
        "trials": [
            {
                "cuts": [c["location"] for c in t["cuts"]] or [w["path"] for w in t["writes"]],
                "verdict": t["verdict"],
                "windows_per_arm": t["windows_per_arm"],
                "seconds": t["seconds"],
            }
            for t in trials
        ],
    }
