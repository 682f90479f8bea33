"""The files of a report (see :func:`knockout.report.write_report`)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knockout.errors import BadInput, NotFound, Refused
from knockout.report.content import ReportFiles, TrialFiles, report_blocks
from knockout.report.flame import flame_svg, folded_lines
from knockout.report.load import document_kind, trials_of
from knockout.report.save import save_json, save_text

if TYPE_CHECKING:
    from knockout.listing import Disassembler

__all__ = ["write"]


def _directory(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BadInput(f"{path} is a file; --report takes a directory") from None
    except PermissionError:
        raise Refused(f"cannot create {path}: permission denied; pick a writable place") from None
    if not os.access(path, os.W_OK):
        raise Refused(f"cannot write into {path}: permission denied; pick a writable place")
    return path


def _trial_files(
    trial: dict[str, Any], directory: Path, prefix: str
) -> tuple[TrialFiles, list[Path]]:
    from knockout.report.plots import distribution_plot, windows_plot

    files, written = TrialFiles(), []
    if trial.get("windows"):
        files.windows = f"{prefix}-windows.png"
        windows_plot(trial, directory / files.windows)
        written.append(directory / files.windows)
    if (trial.get("baseline") or {}).get("samples") or (trial.get("cut") or {}).get("samples"):
        files.distribution = f"{prefix}-distribution.png"
        distribution_plot(trial, directory / files.distribution)
        written.append(directory / files.distribution)
    profiles = trial.get("profiles") or {}
    for arm in ("baseline", "cut"):
        lines = folded_lines(profiles.get(arm))
        if lines:
            files.folded[arm] = f"{prefix}-{arm}.folded"
            save_text(directory / files.folded[arm], "\n".join(lines) + "\n")
            written.append(directory / files.folded[arm])
    if files.folded:
        base, cut = profiles.get("baseline"), profiles.get("cut")
        for view in ("cut", "negated"):
            name = f"{prefix}-flame-{view}.svg"
            title = f"{prefix}: {'cut' if view == 'cut' else 'baseline (negated)'} view"
            save_text(directory / name, flame_svg(base, cut, view=view, title=title))
            written.append(directory / name)
            setattr(files, "flame_cut" if view == "cut" else "flame_negated", name)
    return files, written


def _search_plot(doc: dict[str, Any], directory: Path) -> str | None:
    from knockout.report.plots import Share, shares_plot

    kind = document_kind(doc)
    if kind == "climb":
        items = [
            Share(
                f"{f.get('depth', '?')} {f.get('symbol', '?')}",
                f.get("explained"),
                f.get("explained_ci"),
                f.get("verdict") or ("refused" if f.get("refused") else None),
            )
            for f in doc.get("frames") or []
        ]
        title = "climb: explained share per frame (leaf on top)"
    elif kind == "bisect":
        items = [
            Share(
                f"{i} {p.get('point', '?')}",
                p.get("explained"),
                (p.get("trial") or {}).get("explained_ci"),
                p.get("verdict"),
            )
            for i, p in enumerate(doc.get("probes") or [], start=1)
        ]
        title = "bisect: explained share per probe (first tried on top)"
    else:
        return None
    if not items:
        return None
    gone_at = next((float(t["gone_at"]) for _, _, t in trials_of(doc) if t.get("gone_at")), 0.8)
    name = f"{kind}-explained.png"
    shares_plot(items, directory / name, title=title, gone_at=gone_at)
    return name


def _annotate(doc: dict[str, Any], disassembler: Disassembler) -> None:
    """Add the annotated disassembly of the decisive function to ``doc`` (when it has one)."""
    from knockout.report.annotate import annotate_function, decisive_function

    decisive = decisive_function(doc)
    if decisive is None:
        return
    function, trial = decisive
    try:
        doc["disassembly"] = annotate_function(disassembler, function, trial)
    except NotFound as exc:
        doc["disassembly_note"] = f"no annotated disassembly of {function}: {exc}"


def write(
    doc: dict[str, Any],
    directory: Path,
    *,
    disassembler: Disassembler | None,
    target_info: dict[str, Any] | None,
) -> list[Path]:
    """Write every file of the report; returns them sorted."""
    from knockout.report.html import render_html
    from knockout.report.markdown import render_markdown

    document_kind(doc)
    directory = _directory(directory)
    doc = copy.deepcopy(doc)
    if target_info:
        doc["target_info"] = target_info
    if disassembler is not None:
        _annotate(doc, disassembler)
    files, written = ReportFiles(), []
    for prefix, _, trial in trials_of(doc):
        files.trials[prefix], made = _trial_files(trial, directory, prefix)
        written += made
    files.shares = _search_plot(doc, directory)
    if files.shares:
        written.append(directory / files.shares)
    blocks = report_blocks(doc, files)
    save_text(directory / "report.md", render_markdown(blocks))
    save_text(directory / "report.html", render_html(blocks, directory))
    save_json(directory / "report.json", doc)
    written += [directory / n for n in ("report.md", "report.html", "report.json")]
    for path in written:
        path.chmod(0o644)
    return sorted(written)
