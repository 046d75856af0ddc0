"""Health, watchdog and housekeeping of the running service: operator incidents and Prometheus gauges every
``HEALTH_SECONDS`` (the incident rules are in :mod:`monitor.health`), systemd's STATUS= line, the database
heartbeat and WATCHDOG=1 pings (only while jobs keep finishing), and hourly housekeeping (old ``fetch_runs``,
old service nodes, SQLite ``PRAGMA optimize``)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy import text

from monitor import health
from monitor.db import is_sqlite
from monitor.logs import event
from monitor.models import now
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext, log
from monitor.service.telegram import TelegramLink

HEALTH_SECONDS = 30.0
HOUSEKEEPING_SECONDS = 3600.0
RUNS_KEPT = timedelta(days=30)


class HealthKeeper:
    """The health, heartbeat and housekeeping jobs, the watchdog loop and the status line."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, link: TelegramLink) -> None:
        self.ctx = ctx
        self.book = book
        self.link = link
        self._status_at = 0.0

    def add_jobs(self) -> None:
        """Health every ``HEALTH_SECONDS``, housekeeping hourly, the heartbeat at a quarter of systemd's
        watchdog timeout (when systemd asks for one)."""
        ctx = self.ctx
        ctx.add_job(self.health_job, "health", HEALTH_SECONDS, first=5.0)
        ctx.add_job(self.housekeeping_job, "housekeeping", HOUSEKEEPING_SECONDS, first=60.0)
        wd = ctx.notifier.watchdog_seconds
        if wd:
            # A database round trip proves more than a live event loop: no ping when the DB is wedged.
            ctx.add_job(self.heartbeat_job, "heartbeat", max(0.5, wd / 4), first=0.1)

    async def health_job(self) -> None:
        """Open/close operator incidents, export database gauges, refresh the status line."""
        ctx = self.ctx
        with ctx.track():
            if ctx.stopping or ctx.rt is None:
                return
            try:
                opened = await health.check_incidents(ctx.rt.engine, ctx.settings)
                if opened:
                    ctx.wake(DRAIN_JOB)
                g = await health.database_gauges(ctx.rt.engine)
                ctx.metrics.set_database(**g)
            except Exception as exc:
                event(log, logging.WARNING, "health check failed", error=str(exc))
                ctx.database_failed(exc)
            self.update_status(force=True)

    async def housekeeping_job(self) -> None:
        """Prune old poll records and service nodes; let SQLite refresh its query statistics."""
        ctx = self.ctx
        with ctx.track():
            if ctx.stopping or ctx.rt is None:
                return
            rt = ctx.rt
            try:
                pruned = await rt.store.prune_runs(now() - RUNS_KEPT)
                if self.book.leases is not None:
                    await self.book.leases.prune_nodes()
                if is_sqlite(rt.engine):
                    async with rt.engine.begin() as conn:
                        await conn.execute(text("PRAGMA optimize"))
                event(log, logging.INFO, "housekeeping", fetch_runs_pruned=pruned)
            except Exception as exc:
                event(log, logging.WARNING, "housekeeping failed", error=str(exc))

    async def heartbeat_job(self) -> None:
        """A database round trip that, when it works, counts as progress for the watchdog."""
        ctx = self.ctx
        if ctx.stopping or ctx.rt is None:
            return
        try:
            async with ctx.rt.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            event(log, logging.WARNING, "database heartbeat failed", error=str(exc))
            return
        ctx.progress()

    async def watchdog_loop(self) -> None:
        """WATCHDOG=1 at half systemd's timeout, but only while jobs keep finishing: a wedged database
        or event loop stops the pings and systemd restarts the service."""
        ctx = self.ctx
        wd = ctx.notifier.watchdog_seconds
        if not wd:
            return
        while True:
            if time.monotonic() - ctx.last_progress < wd:
                ctx.notifier.watchdog()
            await asyncio.sleep(wd / 2)

    def update_status(self, force: bool = False) -> None:
        """systemd's STATUS= line: channels held, the last poll, Telegram's state (at most every 5 s)."""
        t = time.monotonic()
        if not force and t - self._status_at < 5:
            return
        self._status_at = t
        parts = [f"polling {self.book.held} of {len(self.book.channels)} channels"]
        if self.ctx.degraded:
            parts.insert(0, f"DEGRADED: {self.ctx.degraded}")
        if self.ctx.last_poll:
            key, when, res = self.ctx.last_poll
            parts.append(f"last poll {key} {when:%H:%M:%S} {res}")
        if self.link.dead_sources:
            parts.append("Telegram session dead")
        elif self.link.tg.down:
            parts.append(f"cannot reach Telegram, next try in {round(self.link.tg.waiting())} s")
        self.ctx.notifier.status("; ".join(parts))
