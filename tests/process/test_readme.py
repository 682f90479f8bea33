"""The README's quick start, run as it is written: every ``# →`` it claims is checked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _example() -> str:
    text = README.read_text()
    found = re.search(r"```sh readme-example\n(.*?)```", text, re.DOTALL)
    assert found, "README.md has no ```sh readme-example block"
    return found[1]


def test_every_quick_start_line_prints_what_the_readme_says() -> None:
    script = _example()
    claims = [m.strip() for m in re.findall(r"# → (.*)$", script, re.MULTILINE)]
    assert len(claims) >= 5
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    at = 0
    for claim in claims:
        where = out.find(claim, at)
        assert where >= 0, f"the README says {claim!r}; the run printed:\n{out}"
        at = where + len(claim)
