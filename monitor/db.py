"""The asyncio engine: SQLite in WAL mode with a busy timeout, or PostgreSQL through asyncpg."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_MS = 30_000


class DatabaseMissing(FileNotFoundError):
    """A read-only open of a SQLite file that does not exist (nothing is created)."""


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None for PostgreSQL or an in-memory database)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser()


def _create_private(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (it would use 0644): the archive is private, and
    SQLite gives the -wal and -shm files the database file's permissions. An existing file is left alone."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def create_engine(url: str, *, readonly: bool = False, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url`` (already mapped to an async driver).

    Read-write: creates the SQLite file (0600) and its folder. ``readonly``: creates nothing (a missing
    SQLite file raises DatabaseMissing), SQLite opens the file with ``mode=ro`` and ``query_only``,
    PostgreSQL sessions default to read-only transactions, so a command that only reads cannot write."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if readonly and path is not None:
            if not path.is_file():
                raise DatabaseMissing(str(path))
            # a URI filename: mode=ro is enforced by SQLite itself (quote() keeps spaces, ? and # literal)
            url = u.set(database="file:" + quote(str(path.resolve())),
                        query={**u.query, "mode": "ro", "uri": "true"}).render_as_string(hide_password=False)
        elif path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
            # mode=rw: SQLite never creates the file itself. The file is created above, once; a connection
            # opened after someone deleted it fails instead of silently starting a new, empty database.
            url = u.set(database="file:" + quote(str(path.resolve())),
                        query={**u.query, "mode": "rw", "uri": "true"}).render_as_string(hide_password=False)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers (status, archive queries) run while the service writes; the busy
            # timeout makes a second writer wait instead of failing with "database is locked".
            cur = dbapi_conn.cursor()
            if readonly:
                cur.execute("PRAGMA query_only=ON")  # setting WAL mode would be a write
            else:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Checkpoint the WAL every ~40 MB instead of every 4 MB: a bulk import rewrites the same index
            # pages batch after batch, and each checkpoint copied (and fsynced) them again (storing 100,000
            # posts: 1.1-2x faster, measured on a shared machine). The WAL file grows to ~40 MB, then is reused.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # asyncpg prepares every statement; after five runs PostgreSQL may switch a prepared statement to a
    # generic plan, and for "message_id IN ($1 … $500)" that plan is a sequential scan of posts — the
    # existence check of each stored page then grows with the archive (30,000-post import measured here:
    # 2,963 posts/s with 6.5 s of it in that SELECT; 4,768 posts/s with custom plans, which keep it an
    # index lookup).
    server_settings = {"plan_cache_mode": "force_custom_plan"}
    if readonly:
        server_settings["default_transaction_read_only"] = "on"
    kwargs.setdefault("connect_args", {"server_settings": server_settings})
    return create_async_engine(url, **kwargs)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def database_now(conn: AsyncSession | AsyncConnection) -> datetime:
    """The database's clock (aware UTC): what every process sharing the database agrees on, whatever its own
    host's clock says (leases, rate limits). PostgreSQL's ``now()`` is the transaction's start; SQLite's is
    the host's clock, which is the one every process on that file shares anyway."""
    dialect = conn.get_bind().dialect if isinstance(conn, AsyncSession) else conn.dialect
    if dialect.name == "sqlite":
        raw = (await conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))).scalar_one()
        return datetime.fromisoformat(str(raw)).replace(tzinfo=UTC)
    value = (await conn.execute(text("SELECT now()"))).scalar_one()
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
