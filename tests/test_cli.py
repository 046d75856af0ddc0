"""The CLI through click's runner and as a real process: help, version, exit codes, db, mentions."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import load_settings
from monitor.posts import Post
from monitor.runtime import open_runtime


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize("cmd", all_commands(main), ids=" ".join)
def test_every_command_has_help_with_an_example(cmd: tuple[str, ...]) -> None:
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    sub = main
    for part in cmd:
        sub = sub.commands[part]  # type: ignore[attr-defined]
    if not isinstance(sub, click.Group):
        assert "Example" in res.output, f"tgmonitor {' '.join(cmd)} --help shows no example"


def test_version() -> None:
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and "tgmonitor, version" in res.output


def test_bad_config_exits_2_without_traceback(write_config) -> None:
    cfg = write_config('[schedule]\nintervall = 60\n[[channels]]\nusername = "https://t.me/"\ninterval = -5\n')
    proc = subprocess.run([sys.executable, "-m", "monitor", "--config", str(cfg), "config", "check"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "intervall" in proc.stderr and "channels[0].username" in proc.stderr and "-5" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_config_check_summary(write_config, sqlite_url: str) -> None:
    cfg = write_config('[[channels]]\nusername = "a_channel"\nsource = "web"\n\n[[entities]]\nname = "Росатом"\n',
                       sqlite_url)
    res = CliRunner().invoke(main, ["--config", str(cfg), "config", "check"])
    assert res.exit_code == 0, res.output
    assert "channels: 1 enabled (1 web)" in res.output and "entities: 1 enabled" in res.output


def test_db_upgrade_and_current_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               db_url: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGMONITOR_DATABASE_URL", db_url)
    r = CliRunner().invoke(main, ["db", "current"])
    assert r.exit_code == 0 and "current: empty" in r.output
    r = CliRunner().invoke(main, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["db", "current"])
    assert "(up to date)" in r.output


def test_db_upgrade_unreachable_database_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGMONITOR_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:9/none")
    r = CliRunner().invoke(main, ["db", "upgrade"])
    assert r.exit_code == 1 and "db upgrade failed" in r.output and "secret" not in r.output


async def _seed(cfg: Path) -> None:
    async with open_runtime(load_settings(cfg)) as rt:
        ch = await rt.store.upsert_channel(username="news_kz", tg_id=1700000001, source="web")
        priv = await rt.store.upsert_channel(tg_id=1800000002, title="Закрытый", source="telethon")
        t = datetime(2025, 5, 1, tzinfo=UTC)
        await rt.ingestor.ingest(ch, [Post(message_id=i, date=t.replace(hour=i), text=f"Токаев и Росатомом {i}")
                                      for i in range(1, 4)])
        await rt.ingestor.ingest(priv, [Post(message_id=7, date=t, text="Росатома нет")])


def test_mentions_jsonl_lists_every_match(write_config, db_url: str) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n\n[[entities]]\nname = "Токаев"\n', db_url)
    asyncio.run(_seed(cfg))
    res = CliRunner().invoke(main, ["--config", str(cfg), "mentions", "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.splitlines()]
    assert len(rows) == 7
    assert set(rows[0]) >= {"channel", "message_id", "date", "entity", "surface", "link"}
    assert rows[0]["message_id"] == 3 and rows[0]["link"] == "https://t.me/news_kz/3"
    assert {r["surface"] for r in rows} == {"Токаев", "Росатомом", "Росатома"}
    assert any(r["link"] == "https://t.me/c/1800000002/7" for r in rows)
    assert datetime.fromisoformat(rows[0]["date"]) == datetime(2025, 5, 1, 3, tzinfo=UTC)
