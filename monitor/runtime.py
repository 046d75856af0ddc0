"""What every command and the service share: engine, store, compiled watchlist, ingestor, outbox planner.

``async with open_runtime(settings) as rt`` migrates the database to head, syncs the watchlist's
entities, and disposes of the engine on exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import migrate
from monitor.config import Settings
from monitor.db import create_engine
from monitor.ingest import Ingestor
from monitor.matching import Watchlist
from monitor.store import OutboxPlanner, Store

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
    cache = settings.data_dir / "cache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Watchlist.compile(settings.entities)
    return Watchlist.compile(settings.entities, cache_dir=cache)


def make_planner(settings: Settings) -> OutboxPlanner | None:
    """The outbox planner for the configured destinations (None when there are none)."""
    if not settings.alerts:
        return None
    from monitor.alerts.outbox import OutboxPlanner as Planner

    return Planner(settings)


@asynccontextmanager
async def open_runtime(settings: Settings, *, upgrade: bool = True) -> AsyncIterator[Runtime]:
    """Open the database (migrated to head) and build the shared parts."""
    engine = create_engine(settings.database.url)
    try:
        if upgrade:
            await migrate.upgrade(engine)
        store = Store(engine)
        await store.sync_entities(settings.entities)
        watchlist = compile_watchlist(settings)
        ingestor = Ingestor(store, watchlist, planner=make_planner(settings),
                            match_link_previews=settings.matching.match_link_previews)
        yield Runtime(settings, engine, store, watchlist, ingestor)
    finally:
        await engine.dispose()
