"""``monitor/`` passes mypy with the settings in pyproject.toml ([tool.mypy]: every function annotated, bodies
checked). Runs with the suite, so the README's test command (and CI) fails on a type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_monitor_passes_mypy(tmp_path: Path) -> None:
    # its cache outside the tree: a fresh check every run, nothing written into the checkout
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                        "--cache-dir", str(tmp_path / "mypy-cache")], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "Success: no issues found" in r.stdout, r.stdout[-2000:]
