"""report.html in a real browser: Debian's headless Chromium shows its embedded plots.

The page of a real trial (tests/fixtures/report/) is opened from the file system and
screenshot; its pixels must show the plots: the arms' colours (the windows and
distribution plots) and the flame graphs' red and blue.  The same page with its figures
removed is the control: the arms' colours never appear without the plots, and the
flame colours only in a few pixels of text.  ``make setup``
installs chromium (mk/report.mk); without it this test fails, it does not skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from knockout.report import write_report

FIXTURE = Path(__file__).parents[1] / "fixtures" / "report" / "trial-planted-readcall.json"
SIZE = (1280, 6000)


def _screenshot(page: Path, out: Path, profile: Path) -> Image.Image:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run make setup (mk/report.mk)"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={SIZE[0]},{SIZE[1]}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(out).convert("RGB")
    assert image.size == SIZE
    return image


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def _counts(image: Image.Image) -> dict[str, int]:
    """Pixels of the baseline blue, the cut orange, the flame graph's red and blue."""
    found = {"baseline": 0, "cut": 0, "grew": 0, "shrank": 0}
    for n, colour in image.getcolors(maxcolors=1 << 24) or []:
        assert isinstance(colour, tuple)
        r, g, b = colour[:3]
        if _near((r, g, b), (0x1F, 0x77, 0xB4)):
            found["baseline"] += n
        elif _near((r, g, b), (0xFF, 0x7F, 0x0E)):
            found["cut"] += n
        elif abs(r - 245) <= 2 and g == b and 55 <= g <= 200:  # knockout.report.flame._colour
            found["grew"] += n
        elif abs(b - 245) <= 2 and r == g and 55 <= r <= 200:
            found["shrank"] += n
    return found


def test_report_html_shows_its_plots_in_headless_chromium(tmp_path: Path) -> None:
    trial = json.loads(FIXTURE.read_text())
    out = tmp_path / "report"
    write_report(trial, out)
    page = out / "report.html"
    shown = _counts(_screenshot(page, tmp_path / "shot.png", tmp_path / "profile"))
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<figure>.*?</figure>", "", page.read_text(), flags=re.S))
    control = _counts(_screenshot(bare, tmp_path / "bare.png", tmp_path / "profile"))
    # the arms' colours come from the plots alone; red and blue text (a verdict, links)
    # blends into a few flame-like pixels, so the plots must add far more than those
    assert control["baseline"] == control["cut"] == 0, control
    assert shown["baseline"] > 200 and shown["cut"] > 200, shown  # the scatter/box plots
    added = {k: shown[k] - control[k] for k in ("grew", "shrank")}
    assert min(added.values()) > 2000, (shown, control)  # both flame graphs
