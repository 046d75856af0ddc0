"""The database failing under the running service: writes refused (a real full-disk error on SQLite, a
disk-full trigger on PostgreSQL) make it DEGRADED in ``status`` and systemd's status line, tell the operator
directly, and recover with the incident recorded; a SQLite file deleted under it is saved and noticed, and a
restart refuses to begin again with an empty database."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_telegram import FakeTelegram

from monitor.config import Settings
from monitor.service import dbwatch
from tests.service_helpers import MENTION, PLAIN, TGM, InProcService, config_text, factory_spec, posts, q
from tests.tme_server import alert_sink, wait_for

OPS = 'operator = true\n'


def _tg_config(db_url: str, sink_port: int) -> str:
    return (f'[database]\nurl = "{db_url}"\n\n'
            f'[telegram]\nclient_factory = "{factory_spec()}"\npush = false\n\n'
            '[schedule]\ninterval = 1\njitter = 0\nrequests_per_minute = 1000000\n\n'
            '[[entities]]\nname = "Росатом"\n\n'
            f'[[alerts]]\nname = "ops"\nurl = "json://127.0.0.1:{sink_port}/ops"\n{OPS}\n'
            '[[channels]]\nusername = "dbw_chan"\n')


async def until(cond: Callable[[], Any], within: float) -> bool:
    """Wait for ``cond()`` (a plain or an async function; checked every 50 ms) at most ``within`` seconds: the
    service's state is set by its own tasks, with no event a test could wait on."""
    async def check() -> bool:
        v = cond()
        return bool(await v) if asyncio.iscoroutine(v) else bool(v)

    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 (a condition of the service's state, see above)
                await asyncio.sleep(0.05)
    except TimeoutError:
        return await check()
    return True


@pytest.fixture
def sink() -> Iterator[Any]:
    with alert_sink() as (s, port):
        s.port = port
        yield s


async def _pg(url: str, sql: str) -> Any:
    """Run ``sql`` (several statements) on PostgreSQL; a single query's value."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if ";" in sql:
            return await conn.execute(sql)
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _pg_posts(url: str, n: int) -> bool:
    return bool(await _pg(url, "select count(*) from posts") == n)


DISK_FULL = """
CREATE FUNCTION hf_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file "base/16384/2619": No space left on device' USING ERRCODE = '53100';
END $$;
CREATE TRIGGER hf_full_nodes BEFORE INSERT OR UPDATE ON service_nodes FOR EACH ROW EXECUTE FUNCTION hf_disk_full();
CREATE TRIGGER hf_full_channels BEFORE INSERT OR UPDATE ON channels FOR EACH ROW EXECUTE FUNCTION hf_disk_full();
CREATE TRIGGER hf_full_posts BEFORE INSERT OR UPDATE ON posts FOR EACH ROW EXECUTE FUNCTION hf_disk_full();
"""
DISK_FREED = "DROP FUNCTION hf_disk_full() CASCADE"


async def test_postgresql_refusing_writes_degrades_tells_the_operator_and_recovers(
        make_settings: Callable[..., Settings], pg_url: str, sink: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.cli.status import collect_status

    monkeypatch.setattr(dbwatch, "CHECK_SECONDS", 1.0)
    server = FakeTelegram()
    ch = server.add(7800001, "dbw_chan")
    ch.post("старый пост")
    settings = make_settings(_tg_config(pg_url, sink.port))
    async with InProcService(settings, server) as svc:
        ctx = svc.service.ctx
        assert await svc.wait_cycles("telethon", 1, 60)
        assert (await collect_status(settings))["service"]["state"] == "ok"

        await _pg(pg_url, DISK_FULL)
        ch.post("Росатом: новость, пока диск полон")
        assert await until(lambda: ctx.degraded is not None, 20)
        assert "No space left on device" in (ctx.degraded or "") and "postgresql://" in (ctx.degraded or "")
        assert await until(lambda: sink.count() == 1, 20)  # told directly: the outbox cannot be written
        assert "не принимает запись" in sink.texts()[0] and "No space left" in sink.texts()[0]
        st = (await collect_status(settings))["service"]
        assert st["state"] == "degraded" and "No space left on device" in st["reason"]

        await _pg(pg_url, DISK_FREED)
        assert await until(lambda: ctx.degraded is None, 20)
        assert await until(lambda: _pg_posts(pg_url, 2), 20)
        st = (await collect_status(settings))["service"]
        assert st["state"] == "ok"
        # the post that came while the disk was full is stored now, and the all-clear went through the outbox
        assert await until(lambda: sink.count() == 2, 20)
        assert "снова принимает запись" in sink.texts()[1]
        snap = await collect_status(settings)
        assert snap["incidents"] == []  # closed
    assert svc.task is not None and svc.task.result() == 0
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        inc = await conn.fetch("select kind, subject, opened_at, closed_at from incidents")
        stored = await conn.fetchval("select count(*) from posts")
    finally:
        await conn.close()
    assert [(r["kind"], r["subject"]) for r in inc] == [("database_writes_failing", "database")]
    assert inc[0]["closed_at"] > inc[0]["opened_at"]
    assert stored == 2


async def test_sqlite_file_deleted_while_running_is_saved_and_a_restart_refuses_an_empty_start(
        make_settings: Callable[..., Settings], tmp_path: Path, sink: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbwatch, "CHECK_SECONDS", 1.0)
    server = FakeTelegram()
    ch = server.add(7800002, "dbw_chan")
    for k in range(3):
        ch.post(f"пост {k}")
    db = tmp_path / "data" / "t.db"
    cfg_text = _tg_config(f"sqlite:///{db}", sink.port)
    settings = make_settings(cfg_text)
    async with InProcService(settings, server) as svc:
        assert await svc.wait_cycles("telethon", 1, 60)
        assert posts(db) == 3
        db.unlink()  # an operator's mistake, a clean-up script: the service has it open
        assert await until(lambda: svc.task is not None and svc.task.done(), 30)
    assert svc.task.result() == 1
    saved = list(db.parent.glob("t.db.recovered-*"))
    assert len(saved) == 1 and posts(saved[0]) == 3 and (saved[0].stat().st_mode & 0o777) == 0o600
    assert not db.exists()  # no empty database was created in its place
    assert await until(lambda: sink.count() == 1, 10)
    assert "was deleted while the service was running" in sink.texts()[0] and str(saved[0]) in sink.texts()[0]

    # a restart (and a single cycle) refuses, in one line, to begin again with an empty archive
    cfg = tmp_path / "tgmonitor.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_", "NOTIFY_"))}
    for args in (("run",), ("run", "--once")):
        r = await asyncio.to_thread(subprocess.run, [TGM, "--config", str(cfg), *args], cwd=tmp_path,
                                    capture_output=True, text=True, env=env, timeout=60)
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, lines
        assert f"the database file {db} is missing" in lines[0] and "tgmonitor db upgrade" in lines[0]
        assert not db.exists()
    # the operator decides: the saved file moved back works again
    os.replace(saved[0], db)
    assert q(db, "select count(*) from posts") == [(3,)]


# --------------------------------------------------------------------------- a full disk, for real (SQLite)


class Run:
    """``tgmonitor run`` with its output on a pipe (a file would be refused too under the file-size limit)."""

    def __init__(self, cfg: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_", "NOTIFY_"))}
        self.p = subprocess.Popen([TGM, "--config", str(cfg), "run"], cwd=cfg.parent, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def _status(cfg: Path) -> dict[str, Any]:
    r = subprocess.run([TGM, "--config", str(cfg), "status", "--format", "json"], cwd=cfg.parent,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_sqlite_on_a_full_disk_degrades_tells_the_operator_and_recovers(tmp_path: Path, servers: Any) -> None:
    pv, port, sink, sport = servers
    pv.add("dbw_full", PLAIN.format(n=1))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["dbw_full"], interval=1,
                               extra='\n[[alerts]]\nname = "ops"\nurl = "json://127.0.0.1:'
                                     f'{sport}/ops"\noperator = true\n'), encoding="utf-8")
    run = Run(cfg)
    try:
        assert wait_for(lambda: posts(db) == 1, 30), run.text()
        assert _status(cfg)["service"]["state"] == "ok"
        # The disk is full: every write of the process beyond its first byte fails (EFBIG, what the kernel
        # says past RLIMIT_FSIZE — SQLite reports it as it would ENOSPC: the write did not happen).
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.prlimit(run.p.pid, resource.RLIMIT_FSIZE, (1, hard))
        pv.add("dbw_full", MENTION.format(n=2))
        assert wait_for(lambda: sink.count() == 1, 30), run.text()  # told directly: the outbox cannot be written
        assert "не принимает запись" in sink.texts()[0]
        assert "database writes are failing" in run.text()
        st = _status(cfg)["service"]
        assert st["state"] == "degraded", st
        assert posts(db) == 1

        resource.prlimit(run.p.pid, resource.RLIMIT_FSIZE, (soft, hard))  # space freed
        assert wait_for(lambda: "database writes work again" in run.text(), 30), run.text()
        assert wait_for(lambda: posts(db) == 2, 30), run.text()  # the post that came meanwhile: stored now
        assert wait_for(lambda: sink.count() == 3, 30), run.text()  # the mention and the all-clear
        assert any("снова принимает запись" in t for t in sink.texts())
        assert _status(cfg)["service"]["state"] == "ok"
        rows = q(db, "select kind, closed_at is not null from incidents")
        assert rows == [("database_writes_failing", 1)], rows
        run.p.terminate()
        assert run.p.wait(20) == 0, run.text()
        assert "Traceback" not in run.text(), run.text()
    finally:
        if run.p.poll() is None:
            run.p.kill()
            run.p.wait()
    # the database is whole
    con = sqlite3.connect(db)
    try:
        assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        con.close()
