"""The wheel ships the migrations: `db upgrade` works from an installed package in any directory."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_wheel_carries_alembic_and_runs_db_upgrade(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        if os.environ.get("CI"):
            pytest.fail("uv is needed to build the wheel in CI")
        pytest.skip("uv not on PATH: install uv to build the wheel")
    out = tmp_path / "dist"
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True)
    wheel = next(out.glob("tgmonitor-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "monitor/_alembic/env.py" in names
    assert any(n.startswith("monitor/_alembic/versions/0001") for n in names)
    # the dashboard's templates and static files ship too (no build step at install time)
    assert {"monitor/dashboard/templates/base.html", "monitor/dashboard/static/style.css",
            "monitor/dashboard/static/app.js"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = tmp_path / "w.db"
    env = dict(os.environ, PYTHONPATH=str(site), TGMONITOR_DATABASE_URL=f"sqlite:///{db}")
    env["TGM_EXPECT"] = str(site)
    code = ("import os, monitor; assert monitor.__file__.startswith(os.environ['TGM_EXPECT']), monitor.__file__; "
            "from monitor.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "db", "upgrade"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"posts", "channels", "alerts", "matches"} <= tables
