"""Shared fixtures: a real SQLite file, a real PostgreSQL database (fresh per test), settings from TOML."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from monitor.config import Settings, load_settings

if TYPE_CHECKING:
    from tests.service_helpers import Proc
    from tests.tme_server import Preview, Sink

PG_ADMIN_URL = os.environ.get("TGMONITOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def _pg_reachable() -> bool:
    from sqlalchemy.engine import make_url

    u = make_url(PG_ADMIN_URL)
    try:
        with socket.create_connection((u.host or "127.0.0.1", u.port or 5432), timeout=1):
            return True
    except OSError:
        return False


async def _admin(sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(PG_ADMIN_URL)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username or "postgres",
                                 password=u.password, database=u.database or "postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped after). In CI it must be reachable."""
    if not _pg_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (CI must provide it)")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}; start one or set TGMONITOR_TEST_PG_URL to run")
    from sqlalchemy.engine import make_url

    name = f"tgm_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both databases: every storage test runs on a real SQLite file and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_url")


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteConfig:
    """write_config(body, db_url=None) -> path of a tgmonitor.toml in tmp_path (no ambient env leaks in)."""
    for var in ("TGMONITOR_DATABASE_URL", "TG_SESSION", "TGMONITOR_CLIENT_FACTORY", "TG_API_ID", "TG_API_HASH",
                "TGMONITOR_DATA_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)

    def write(body: str = "", db_url: str | None = None, name: str = "tgmonitor.toml") -> Path:
        path = tmp_path / name
        text = body
        if db_url is not None:
            text = f'[database]\nurl = "{db_url}"\n\n' + body
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_settings(write_config: WriteConfig) -> Callable[..., Settings]:
    def make(body: str = "", db_url: str | None = None) -> Settings:
        return load_settings(write_config(body, db_url))

    return make


@pytest.fixture
async def runtime(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[object]:
    """An open Runtime (migrated database, compiled watchlist) over both databases."""
    from monitor.runtime import open_runtime

    settings = make_settings('[[entities]]\nname = "Росатом"\n', db_url)
    async with open_runtime(settings) as rt:
        yield rt


@pytest.fixture
def servers() -> Iterator[tuple[Preview, int, Sink, int]]:
    """A t.me/s-like preview server and an alert sink: (preview, its port, sink, its port)."""
    from tests.tme_server import alert_sink, preview_server

    with preview_server() as (pv, port), alert_sink() as (sink, sport):
        yield pv, port, sink, sport


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """The ``tgmonitor`` processes a test starts (append them): killed after the test if still running."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()
