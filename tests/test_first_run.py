"""The first minutes of a new user: the quickstart is quiet when not in a terminal, and the gallery's
run files do not show up as untracked files in a clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_quickstart_shows_no_progress_bar_when_not_in_a_terminal(tmp_path):
    out = tmp_path / "quick.h5"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--epochs", "1", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}: 24 steps; now run: dyntrace plot {out}"
    assert "step/s" not in result.stderr and "%|" not in result.stderr


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_gallery_run_files_are_ignored_by_the_repository():
    for path in ("gallery/runs/ewma/minibatch8.h5", "gallery/runs/landscape/run.h5"):
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert check.returncode == 0, (
            f"{path} would show up as an untracked file after `dyntrace gallery -o gallery`"
        )
