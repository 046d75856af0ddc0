"""The asyncio engine: SQLite in WAL mode with a busy timeout, or PostgreSQL through asyncpg."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Table, event, text
from sqlalchemy.engine import Dialect, make_url
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


# ------------------------------------------------------------------ bulk writes through the driver
#
# The store's bulk paths (posts, matches, the search index, the stats rollup) skip SQLAlchemy's per-row
# parameter handling and talk to the driver under the session's own transaction. Values still pass
# through SQLAlchemy's bind processors for their column types, so a row written this way is byte for byte
# the row the ORM would have written.

Processor = Callable[[Any], Any]
_PROCESSORS: dict[tuple[str, str, str, tuple[str, ...]], list[tuple[int, Processor, Any]]] = {}
_NOTHING = object()
# sqlite3 releases the GIL around every step of a statement, and an executemany steps once per row: with
# another thread busy (the export parser), taking the GIL back row after row made a 2,000-row insert
# several times slower. A multi-row VALUES statement steps once per few thousand parameters instead.
_SQLITE_MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


async def driver_connection(session: AsyncSession | AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite or asyncpg) under ``session``'s current transaction."""
    conn = await session.connection() if isinstance(session, AsyncSession) else session
    drv: Any = (await conn.get_raw_connection()).driver_connection
    if conn.in_transaction() and hasattr(drv, "is_in_transaction") and not drv.is_in_transaction():
        # SQLAlchemy begins asyncpg's transaction lazily, at the first statement it runs: begin it now, or
        # a statement sent straight to the driver would run (and commit) on its own.
        await conn.exec_driver_sql("SELECT 1")
    return drv


def _processors(dialect: Dialect, table: Table, columns: Sequence[str]) -> list[tuple[int, Processor, Any]]:
    """(position, SQLAlchemy's bind processor, what it makes of None) of the columns whose values need
    converting for the driver (dates, JSON, booleans on SQLite; JSON's None, for one, is the text 'null')."""
    key = (dialect.name, dialect.driver, table.name, tuple(columns))
    procs = _PROCESSORS.get(key)
    if procs is None:
        procs = []
        for i, name in enumerate(columns):
            proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                procs.append((i, proc, proc(None)))
        _PROCESSORS[key] = procs
    return procs


def bind_rows(dialect: Dialect, table: Table, columns: Sequence[str],
              rows: Iterable[Sequence[object]]) -> list[tuple[object, ...]]:
    """``rows`` (values in ``columns`` order) with every value converted by its column's bind processor.

    Converting is most of the Python work of a bulk insert, so what repeats is converted once: None, and
    a value that is the very object of the row before (a batch's ``stored_at``, True and False)."""
    procs = _processors(dialect, table, columns)
    if not procs:
        return [tuple(r) for r in rows]
    last_in: list[object] = [_NOTHING] * len(procs)
    last_out: list[object] = [None] * len(procs)
    out = []
    for r in rows:
        vals = list(r)
        for k, (i, proc, none) in enumerate(procs):
            v = vals[i]
            if v is None:
                vals[i] = none
            elif v is last_in[k]:
                vals[i] = last_out[k]
            else:
                vals[i] = last_out[k] = proc(v)
                last_in[k] = v
        out.append(tuple(vals))
    return out


async def sqlite_insert(driver: Any, head: str, rows: Sequence[Sequence[object]], tail: str = "") -> None:
    """``head`` (``INSERT INTO t (a, b)``) with ``rows`` and then ``tail`` (an ``ON CONFLICT`` clause), on
    an aiosqlite connection, as few multi-row ``VALUES`` statements as SQLite's parameter limit allows."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, _SQLITE_MAX_PARAMS // width)
    one = "(" + ", ".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        sql = f"{head} VALUES {', '.join([one] * len(chunk))} {tail}"
        await (await driver.execute(sql, list(itertools.chain.from_iterable(chunk)))).close()
