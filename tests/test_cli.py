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

from monitor.cli import load_all, main
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


@pytest.mark.parametrize("cmd", all_commands(load_all()), ids=" ".join)
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


# --------------------------------------------------------------------------- read-only commands, database errors

READ_ONLY = [("mentions",), ("search", "Росатом"), ("stats", "--format", "csv"), ("export",), ("alerts", "list"),
             ("status",), ("mentions", "--entity", "госкорпорация")]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its (mtime_ns, size)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_read_only_commands_do_not_write_the_database(write_config, tmp_path: Path) -> None:
    db = tmp_path / "data" / "archive.db"
    cfg = write_config('[[entities]]\nname = "Росатом"\naliases = ["госкорпорация"]\n\n[[entities]]\nname = "Токаев"\n',
                       f"sqlite:///{db}")
    asyncio.run(_seed(cfg))
    # an older version wrote the watchlist cache; a reader must not need it or write one
    for side in ("archive.db-wal", "archive.db-shm"):
        assert not (db.parent / side).exists()  # the writer closed cleanly
    before = _files(tmp_path)
    for args in READ_ONLY:
        res = CliRunner().invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 0, (args, res.output)
    after = _files(tmp_path)
    assert after[str(db.relative_to(tmp_path))] == before[str(db.relative_to(tmp_path))]  # mtime and size
    # nothing new but SQLite's own shared-memory index and (empty) log, which any reader of WAL opens
    new = set(after) - set(before)
    assert new <= {"data/archive.db-wal", "data/archive.db-shm"}, new
    assert all(after[f][1] == 0 for f in new if f.endswith("-wal"))
    assert {k: v for k, v in after.items() if k in before} == before


def test_read_only_commands_on_an_older_schema_say_upgrade_and_change_nothing(write_config, db_url: str) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n', db_url)
    settings = load_settings(cfg)

    async def at(revision: str | None) -> str | None:
        from monitor import migrate
        from monitor.db import create_engine

        engine = create_engine(settings.database.url)
        try:
            if revision:
                await migrate.upgrade(engine, revision)
            return (await migrate.current(engine))[0]
        finally:
            await engine.dispose()

    res = CliRunner().invoke(main, ["--config", str(cfg), "mentions"])  # no tables (SQLite: no file) at all
    assert res.exit_code == 1 and "run `tgmonitor db upgrade`" in res.output, res.output
    assert ("has no tables yet" if db_url.startswith("postgresql") else "no database at") in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert asyncio.run(at(None)) is None  # still nothing: not migrated behind the user's back
    asyncio.run(at("0005"))
    for args in READ_ONLY[:5]:
        res = CliRunner().invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 1, (args, res.output)
        assert "is at schema revision 0005" in res.output and "run `tgmonitor db upgrade`" in res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert asyncio.run(at(None)) == "0005"


def test_a_missing_sqlite_database_is_one_line_and_never_created(write_config, tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "archive.db"
    cfg = write_config('[[entities]]\nname = "Росатом"\n', f"sqlite:///{db}")
    before = _files(tmp_path)
    for args in READ_ONLY:
        proc = subprocess.run([sys.executable, "-m", "monitor", "--config", str(cfg), *args],
                              capture_output=True, text=True)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"no database at {db}" in proc.stderr and "tgmonitor db upgrade" in proc.stderr
    assert not db.parent.exists() and _files(tmp_path) == before
    res = CliRunner().invoke(main, ["--config", str(cfg), "db", "current"])
    assert res.exit_code == 0 and "current: empty" in res.output and not db.parent.exists()


async def test_read_only_engine_refuses_writes(db_url: str) -> None:
    from sqlalchemy import text

    from monitor.config import to_async_url
    from monitor.db import create_engine

    url = to_async_url(db_url)
    rw = create_engine(url)
    async with rw.begin() as conn:
        await conn.execute(text("CREATE TABLE t (a integer)"))
    await rw.dispose()
    ro = create_engine(url, readonly=True)
    try:
        async with ro.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
            with pytest.raises(Exception, match=r"(?i)read-?only|readonly"):
                await conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await ro.dispose()


UNREACHABLE = "postgresql://nobody:s3cr3t-pw@127.0.0.1:9/tgm"


@pytest.mark.parametrize("args", [("alerts", "list"), ("alerts", "retry", "--failed"), ("mentions",),
                                  ("search", "x"), ("stats",), ("export",), ("rematch",), ("reindex",), ("status",),
                                  ("db", "upgrade"), ("db", "current")], ids=" ".join)
def test_an_unreachable_database_is_one_line_naming_it(write_config, args: tuple[str, ...]) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n', UNREACHABLE)
    res = CliRunner().invoke(main, ["--config", str(cfg), *args])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output  # was a 158-line traceback
    assert "database postgresql://nobody:***@127.0.0.1:9/tgm cannot be reached" in lines[0]
    assert "is PostgreSQL running there" in lines[0] and "s3cr3t" not in res.output


def test_database_problem_tells_database_errors_from_other_network_errors() -> None:
    from monitor.runtime import database_problem

    def web_source() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")

    try:
        web_source()
    except OSError as exc:
        assert database_problem(exc, UNREACHABLE) is None  # a web page's refusal is not the database's
    assert database_problem(ValueError("x"), UNREACHABLE) is None


def test_sqlite_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    import stat

    from sqlalchemy import text

    from monitor.db import create_engine

    db = tmp_path / "new" / "archive.db"

    async def go() -> dict[str, int]:
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (a integer)"))
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            # while the engine is open the WAL and its index exist beside the file
            return {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
        finally:
            await engine.dispose()

    modes = asyncio.run(go())
    assert modes == {"archive.db": 0o600, "archive.db-wal": 0o600, "archive.db-shm": 0o600}


def test_entity_filter_takes_a_name_an_alias_or_an_id_in_every_command(write_config, db_url: str) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\nid = "rosatom"\naliases = ["Госкорпорация «Росатом»", '
                       '"ГК Росатом"]\n\n[[entities]]\nname = "Токаев"\n', db_url)
    asyncio.run(_seed(cfg))
    for ref in ("Росатом", "росатом", "rosatom", "ГК Росатом", "гк  росатом", "Госкорпорация «Росатом»"):
        base = ["--config", str(cfg)]
        res = CliRunner().invoke(main, [*base, "mentions", "--entity", ref, "--format", "jsonl"])
        assert res.exit_code == 0, (ref, res.output)
        assert {json.loads(x)["entity"] for x in res.output.splitlines()} == {"Росатом"}
        assert len(res.output.splitlines()) == 4
        res = CliRunner().invoke(main, [*base, "export", "--entity", ref, "--format", "jsonl"])
        assert res.exit_code == 0 and len(res.output.splitlines()) == 4, (ref, res.output)
        res = CliRunner().invoke(main, [*base, "stats", "--entity", ref, "--format", "json"])
        assert res.exit_code == 0 and [e["entity"] for e in json.loads(res.output)["entities"]] == ["Росатом"]
        res = CliRunner().invoke(main, [*base, "search", "Токаев", "--entity", ref, "--format", "jsonl"])
        assert res.exit_code == 0 and len(res.output.splitlines()) == 3, (ref, res.output)
    res = CliRunner().invoke(main, ["--config", str(cfg), "mentions", "--entity", "Газпром"])
    assert res.exit_code == 2 and "unknown entity 'Газпром'" in res.output


def test_backfill_since_takes_what_mentions_since_takes(write_config) -> None:
    from datetime import timedelta

    from monitor.cli.backfill import _parse_since

    t = _parse_since("30d")
    assert t is not None and abs((datetime.now(UTC) - timedelta(days=30)) - t) < timedelta(minutes=1)
    assert _parse_since("2025-01") == datetime(2025, 1, 1, tzinfo=UTC)
    assert _parse_since("2025-01-31T12:00+03:00") == datetime(2025, 1, 31, 9, tzinfo=UTC)
    cfg = write_config('[[entities]]\nname = "Росатом"\n')
    res = CliRunner().invoke(main, ["--config", str(cfg), "backfill", "@not_configured", "--since", "30d"])
    assert "--since" not in res.output and "not_configured" in res.output, res.output  # parsed; the channel is not
    res = CliRunner().invoke(main, ["--config", str(cfg), "backfill", "@not_configured", "--since", "30 days"])
    assert res.exit_code == 2 and "--since: '30 days' is not a date" in res.output


def test_the_lazy_command_table_matches_the_commands() -> None:
    from monitor.alerts.outbox import STATUSES
    from monitor.archive import PERIODS
    from monitor.cli import alerts, archive
    from monitor.cli.app import COMMANDS

    group = load_all()
    assert set(COMMANDS) == set(group.commands)  # a new command must be added to COMMANDS
    for name, (module, first_line) in COMMANDS.items():
        cmd = group.commands[name]
        assert cmd.callback is not None and cmd.callback.__module__ == f"monitor.cli.{module}", name
        assert " ".join((cmd.help or "").strip().split("\n\n")[0].split()) == first_line, name
    assert alerts.STATUSES == STATUSES and archive.PERIODS == PERIODS


@pytest.mark.parametrize("args", [("--help",), ("config", "check"), ("mentions", "--help"), ("match", "--help")],
                         ids=" ".join)
def test_help_and_light_commands_do_not_load_the_heavy_libraries(write_config, args: tuple[str, ...]) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n')
    code = ("import sys\nfrom monitor.cli import main\ntry:\n    main([" + ", ".join(repr(a) for a in
            ("--config", str(cfg), *args)) + "])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'telethon', "
            "'apprise', 'aiosqlite', 'asyncpg', 'pymorphy3', 'starlette', 'uvicorn', 'jinja2'})\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr
