"""``tgmonitor demo``: offline, no config, alerts printed to the console, a mentions table, exit 0; the
sample data ships inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main as cli


def test_demo_runs_offline_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no tgmonitor.toml here
    for var in ("TGMONITOR_DATABASE_URL", "TGMONITOR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(cli, ["demo", "--keep", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "https://t.me/c/1999000001/" in out  # alerts were printed as they fired, with links
    assert "Mentions per entity:" in out
    table = out.split("Mentions per entity:")[1].split("Next:")[0]
    for entity in ("Речсталь", "Северный кредит", "Игорь Волков", "Заречинск", "Каменный Брод"):
        assert entity in table
    assert "Каменном Броде" in table and "Игорем Волковым" in table  # inflected forms were found
    assert "[[channels]]" in out and 'source = "web"' in out
    summary = next(line for line in out.splitlines() if "posts imported" in line)
    posts, alerts = int(summary.split()[0]), int(summary.split(",")[1].split()[0])
    assert posts >= 55 and alerts >= 30
    assert (tmp_path / "demo" / "demo.db").exists()


def test_sample_data_is_package_data() -> None:
    pkg = resources.files("monitor.demo")
    assert (pkg / "sample_export.json").is_file() and (pkg / "watchlist.toml").is_file()


def test_kept_demo_can_be_explored_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TGMONITOR_DATABASE_URL", "TGMONITOR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    kept = tmp_path / "demo-data"
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["demo", "--keep", str(kept)])
    assert r.exit_code == 0, r.output
    assert f"cd {kept} && tgmonitor mentions" in r.output
    monkeypatch.chdir(kept)  # the default ./tgmonitor.toml is the one the demo wrote
    m = CliRunner().invoke(cli, ["mentions", "--format", "jsonl"])
    assert m.exit_code == 0, m.output
    assert sum(1 for line in m.output.splitlines() if '"entity": "Каменный Брод"' in line) >= 5
