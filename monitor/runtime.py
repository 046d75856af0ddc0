"""What every command and the service share: engine, store, compiled watchlist, ingestor, outbox planner.

``async with open_runtime(settings) as rt`` migrates the database to head, syncs the watchlist's
entities, and disposes of the engine on exit. ``async with open_reader(settings) as engine`` is for
commands that only read (mentions, search, stats, export, alerts list): it opens the database
read-only, migrates nothing, creates nothing, and says in one line when the database is missing or not
migrated. ``database_problem(exc, url)`` turns any failure to reach or read the database into one line
(redacted URL, what went wrong, what to do) for every command and ``run --once``."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from monitor.config import Settings
    from monitor.ingest import Ingestor
    from monitor.matching import Watchlist
    from monitor.store import OutboxPlanner, Store

# SQLAlchemy, Alembic, the matcher and the store are imported where they are used: a command that only
# needs the configuration (config check, --help) does not load them (the CLI starts in a tenth of a second).

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    store: Store
    watchlist: Watchlist
    ingestor: Ingestor

    @property
    def planner(self) -> OutboxPlanner | None:
        return self.ingestor.planner


def compile_watchlist(settings: Settings) -> Watchlist:
    """The enabled entities compiled (cached on disk in the data dir: building 10k forms takes seconds)."""
    from monitor.matching import Watchlist

    cache = settings.data_dir / "cache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Watchlist.compile(settings.entities, languages=settings.matching.languages)
    return Watchlist.compile(settings.entities, cache_dir=cache, languages=settings.matching.languages)


def make_planner(settings: Settings) -> OutboxPlanner | None:
    """The outbox planner for the configured destinations (None when there are none)."""
    if not settings.alerts:
        return None
    from monitor.alerts.outbox import OutboxPlanner as Planner

    return Planner(settings)


@asynccontextmanager
async def open_runtime(settings: Settings, *, upgrade: bool = True) -> AsyncIterator[Runtime]:
    """Open the database (migrated to head) and build the shared parts."""
    from monitor import migrate
    from monitor.db import create_engine
    from monitor.ingest import Ingestor
    from monitor.store import Store

    missing = missing_database(settings)
    if missing is not None:
        # Every writing command (run, import, backfill, alerts, …) opens here: none may begin again with an
        # empty archive because the SQLite file it used before was deleted or moved away.
        raise DatabaseNotReady(missing)
    engine = create_engine(settings.database.url)
    try:
        if upgrade:
            await migrate.upgrade(engine)
        remember(settings)  # the file exists now: a later start that finds it gone refuses
        store = Store(engine)
        await store.sync_entities(settings.entities)
        watchlist = compile_watchlist(settings)
        ingestor = Ingestor(store, watchlist, planner=make_planner(settings),
                            match_link_previews=settings.matching.match_link_previews)
        rt = Runtime(settings, engine, store, watchlist, ingestor)
        try:
            yield rt
        finally:
            rt.ingestor.close()  # its matching worker processes, if it started any (a reload may have replaced it)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- the SQLite file known to be in use
# A marker in the data directory remembers that the configured SQLite file existed, so a command that finds it
# gone refuses (one line; ``tgmonitor db upgrade`` creates a new one explicitly) instead of silently beginning
# again with an empty archive. PostgreSQL needs none: a database that is gone cannot be connected to.

DATABASE_MARKER = "database.known"


def database_file(settings: Settings) -> Path | None:
    """The SQLite file of the configured database (absolute), None for PostgreSQL or in-memory."""
    from monitor.db import sqlite_path

    path = sqlite_path(settings.database.url)
    return path.resolve() if path is not None else None


def marker_path(settings: Settings) -> Path:
    """The marker: in the data directory, beside the session and its lock."""
    return settings.data_dir / DATABASE_MARKER


def _known_files(settings: Settings) -> set[str]:
    try:
        data = json.loads(marker_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(p) for p in data.get("databases", [])} if isinstance(data, dict) else set()


def missing_database(settings: Settings) -> str | None:
    """The refusal line when the SQLite file this data directory has used before is gone, else None."""
    path = database_file(settings)
    if path is None or path.exists() or str(path) not in _known_files(settings):
        return None
    return (f"the database file {path} is missing, but this data directory ({settings.data_dir}) has used it "
            f"before: restore it from a backup (or a {path.name}.recovered-* file beside it), or run "
            "`tgmonitor db upgrade` to start again with an empty database")


def remember(settings: Settings) -> None:
    """Note in the marker that the configured SQLite file exists and is in use (best effort: a data
    directory that cannot be written only loses this protection)."""
    from monitor.logs import event

    path = database_file(settings)
    if path is None or not path.exists():
        return
    known = _known_files(settings)
    if str(path) in known:
        return
    marker = marker_path(settings)
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"databases": sorted(known | {str(path)})}, f)
        os.replace(tmp, marker)
    except OSError as exc:
        event(log, logging.WARNING, "cannot write the database marker", path=str(marker),
              error=exc.strerror or str(exc))


# --------------------------------------------------------------------------- read-only commands


class DatabaseNotReady(RuntimeError):
    """The database a read-only command needs is missing, empty, or at another schema revision."""


def display_url(url: str) -> str:
    """The database URL as the user wrote it (no async driver name), password hidden (``user:***@``).

    Plain string work, no SQLAlchemy: ``config check`` shows it without loading the database layer."""
    from monitor.logs import redact

    m = re.match(r"^([A-Za-z][\w.-]*?)(?:\+\w+)?://(.*)$", url.strip(), re.S)
    if not m:
        return redact(url)
    scheme, rest = m.groups()
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    return redact(f"{scheme}://{netloc}{sep}{tail}")


def _known_revisions() -> set[str]:
    """Every schema revision this version ships (an older database is one of them)."""
    from alembic.script import ScriptDirectory

    from monitor import migrate

    return {r.revision for r in ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions()}


def head_revision() -> str:
    """The newest schema revision this version ships."""
    from alembic.script import ScriptDirectory

    from monitor import migrate

    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head() or ""


@asynccontextmanager
async def open_reader(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A read-only engine over a database already at this version's schema (disposed of on exit).

    Never migrates, never writes (SQLite ``mode=ro`` + ``query_only``, PostgreSQL read-only
    transactions), never creates a file; raises DatabaseNotReady with the fix when the database is
    missing, has no tables yet or is at another revision."""
    from monitor import migrate
    from monitor.db import DatabaseMissing, create_engine

    url = settings.database.url
    try:
        engine = create_engine(url, readonly=True)
    except DatabaseMissing as exc:
        raise DatabaseNotReady(
            f"no database at {exc}: run `tgmonitor db upgrade` to create it (the service creates it too), "
            "or point [database] url / TGMONITOR_DATABASE_URL at the existing one") from None
    try:
        cur, head = await migrate.current(engine)
        if cur is None:
            raise DatabaseNotReady(f"database {display_url(url)} has no tables yet: run `tgmonitor db upgrade` "
                                   "(or start the service once)")
        if cur != head:
            if cur in _known_revisions():
                raise DatabaseNotReady(f"database {display_url(url)} is at schema revision {cur}, this version "
                                       f"reads {head}: run `tgmonitor db upgrade`")
            raise DatabaseNotReady(f"database {display_url(url)} is at schema revision {cur}, which this version "
                                   f"of tgmonitor does not know (newest here: {head}): upgrade tgmonitor")
        yield engine
    finally:
        await engine.dispose()


def _root_cause(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and the adapters' wrappers."""
    seen: set[int] = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "orig", None) or cur.__cause__
        if not isinstance(nxt, BaseException):
            break
        cur = nxt
    return cur


_DB_PACKAGES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")
_DB_FRAMES = (*(f"{os.sep}{p}{os.sep}" for p in _DB_PACKAGES), os.path.join("monitor", "db.py"))


def _is_database_error(exc: BaseException) -> bool:
    """SQLAlchemy's and the drivers' errors, and an OSError or timeout raised while connecting (asyncpg
    lets ``ConnectionRefusedError`` through unwrapped): those are told apart from a web source's network
    errors by where they were raised."""
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.db import DatabaseMissing

    if isinstance(exc, SQLAlchemyError | DatabaseNotReady | DatabaseMissing):
        return True
    if type(exc).__module__.split(".", 1)[0] in _DB_PACKAGES:
        return True
    if isinstance(exc, OSError | TimeoutError):
        tb = exc.__traceback__
        while tb is not None:
            if any(part in tb.tb_frame.f_code.co_filename for part in _DB_FRAMES):
                return True
            tb = tb.tb_next
    return False


def database_problem(exc: BaseException, url: str) -> str | None:
    """One line naming the database (password hidden), what went wrong and what to do; None when ``exc``
    is not about reaching or reading the database. Shared by every command and ``run --once``."""
    if not _is_database_error(exc):
        return None
    from monitor.db import DatabaseMissing, sqlite_path

    if isinstance(exc, DatabaseNotReady):
        return str(exc)
    if isinstance(exc, DatabaseMissing):
        return f"no database at {exc}: run `tgmonitor db upgrade` to create it"
    root = _root_cause(exc)
    reason = " ".join((str(root) or type(root).__name__).split())[:300]
    name = type(root).__name__
    low = reason.lower()
    where = f"database {display_url(url)}"
    if sqlite_path(url) is not None:
        if isinstance(root, PermissionError) or "readonly" in low or "permission" in low:
            hint = "check that this user may write the file and its folder"
        elif isinstance(root, FileNotFoundError | NotADirectoryError | IsADirectoryError) or "unable to open" in low:
            hint = "check the path in [database] url or TGMONITOR_DATABASE_URL"
        elif "no such table" in low:
            hint = "run `tgmonitor db upgrade`"
        elif "locked" in low or "busy" in low:
            hint = "another process holds a long write; try again"
        elif "malformed" in low or "not a database" in low:
            hint = "the file is damaged or is not a tgmonitor database; restore it from a backup"
        else:
            hint = "check [database] url or TGMONITOR_DATABASE_URL"
        return f"{where}: {name}: {reason} ({hint})"
    if isinstance(root, ConnectionRefusedError) or "connect call failed" in low or "refused" in low:
        what, hint = "cannot be reached", "is PostgreSQL running there, and are the host and port right?"
    elif "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low:
        what, hint = "cannot be reached", "the host name does not resolve: check the host in [database] url"
    elif isinstance(root, TimeoutError) or "timeout" in low or "timed out" in low:
        what, hint = "did not answer in time", "check the host, the port and the network"
    elif "password" in low or ("role" in low and "does not exist" in low) or "authentication" in low:
        what, hint = "refused the login", "check the user and password in [database] url or TGMONITOR_DATABASE_URL"
    elif "database" in low and "does not exist" in low:
        what, hint = "does not exist", "create it with createdb, then run `tgmonitor db upgrade`"
    elif ("relation" in low and "does not exist" in low) or "no such table" in low:
        what, hint = "has no tgmonitor tables", "run `tgmonitor db upgrade`"
    elif "read-only" in low or "read only" in low:
        what, hint = "refused a write", "this command should not write: please report it"
    else:
        what, hint = "failed", "check [database] url or TGMONITOR_DATABASE_URL"
    return f"{where} {what}: {name}: {reason} ({hint})"


def entity_refs(settings: Settings, wanted: Sequence[str]) -> tuple[str, ...]:
    """``--entity`` values as the archive knows them: a configured entity's name, any of its aliases or
    its id (any letter case, ё as е) becomes that entity's id; anything else is passed on unchanged (the
    archive also knows entities by their stored names, and says which exist when one does not)."""
    def key(text: str) -> str:
        return " ".join(text.replace("ё", "е").replace("Ё", "Е").split()).casefold()

    by_key: dict[str, str] = {}
    for e in settings.entities:  # ids first, then names, then aliases: an exact id always wins
        by_key.setdefault(key(e.id), e.id)
    for e in settings.entities:
        by_key.setdefault(key(e.name), e.id)
    for e in settings.entities:
        for alias in e.aliases:
            by_key.setdefault(key(alias), e.id)
    return tuple(by_key.get(key(w), w) for w in wanted)
