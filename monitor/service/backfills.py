"""The backfill queue worker: runs the backfills that ``tgmonitor backfill`` queued (``backfill_requests``)
while this process holds the session, one at a time, writing their progress for the waiting command; a stop
or a Telegram outage puts the request back in the queue, to resume where its pages stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from monitor import backfill_queue
from monitor import models as m
from monitor.jobs.base import SessionDead, source_unreachable
from monitor.logs import event
from monitor.service.context import DRAIN_JOB, LOGIN_HINT, ServiceContext, log
from monitor.service.runners import Runners
from monitor.service.telegram import TelegramLink

BACKFILL_SECONDS = 2.0  # how often the queue of backfill requests is looked at


class BackfillWorker:
    """Takes queued backfill requests one at a time and runs them with the source's jobs."""

    def __init__(self, ctx: ServiceContext, runners: Runners, link: TelegramLink) -> None:
        self.ctx = ctx
        self.runners = runners
        self.link = link
        self.running: int | None = None  # the request being run now

    def add_job(self) -> None:
        """Look at the queue every ``BACKFILL_SECONDS``."""
        self.ctx.add_job(self.backfill_job, "backfill", BACKFILL_SECONDS, first=1.0)

    async def backfill_job(self) -> None:
        """Claim the next queued request, if any, and run it."""
        ctx = self.ctx
        with ctx.track():
            if ctx.stopping or ctx.rt is None:
                return
            engine = ctx.rt.engine
            try:
                req = await backfill_queue.claim_next(engine)
            except Exception as exc:
                event(log, logging.WARNING, "backfill queue unreadable", error=str(exc))
                return
            if req is None:
                return
            self.running = req.id
            try:
                await self._run(req)
            finally:
                self.running = None

    async def requeue_running(self) -> None:
        """At stop: the request cut short goes back to the queue (the next start resumes it)."""
        if self.running is not None and self.ctx.rt is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backfill_queue.finish(self.ctx.rt.engine, self.running, "queued"), 1.0)

    async def _run(self, req: m.BackfillRequest) -> None:
        ctx, link = self.ctx, self.link
        assert ctx.rt is not None
        engine = ctx.rt.engine
        from monitor.jobs.backfill import BackfillError, find_configured

        try:
            cfg = find_configured(ctx.settings, req.channel)
        except BackfillError as exc:
            await backfill_queue.finish(engine, req.id, "failed", error=str(exc))
            return
        if cfg.source in link.dead_sources:
            await backfill_queue.finish(engine, req.id, "failed", error=LOGIN_HINT)
            return
        if link.waiting(cfg.source):
            await backfill_queue.finish(engine, req.id, "queued")  # runs once Telegram is reachable again
            return
        progress: dict[str, int | None] = {"stored": 0, "total": None}
        written: dict[str, int | None] = {"stored": 0, "total": None}

        def on_progress(stored: int, total: int | None) -> None:
            progress["stored"], progress["total"] = stored, total

        async def writer() -> None:
            while True:
                await asyncio.sleep(1.0)
                if progress != written:
                    written.update(progress)
                    with contextlib.suppress(Exception):
                        await backfill_queue.set_progress(engine, req.id, int(progress["stored"] or 0),
                                                          progress["total"])

        event(log, logging.INFO, "backfill started", channel=cfg.key, request=req.id)
        w = asyncio.create_task(writer())
        try:
            report = await self.runners.get(cfg.source).jobs.backfill(
                cfg, since=req.since, limit=req.limit, alert=req.alert, progress=on_progress)
        except SessionDead as exc:
            await backfill_queue.finish(engine, req.id, "failed", error=LOGIN_HINT)
            await link.session_died(str(exc))
            return
        except asyncio.CancelledError:
            # Stopping: back in the queue; the next start resumes it where its pages stopped.
            with contextlib.suppress(Exception):
                await asyncio.shield(backfill_queue.finish(engine, req.id, "queued"))
            raise
        except Exception as exc:
            unreachable = source_unreachable(exc)
            if unreachable is not None:
                # Its pages so far are stored: back in the queue, it continues where it stopped.
                await backfill_queue.finish(engine, req.id, "queued")
                await link.unreachable(unreachable)
                return
            await backfill_queue.finish(engine, req.id, "failed", error=f"{type(exc).__name__}: {exc}")
            event(log, logging.ERROR, "backfill failed", channel=cfg.key, error=str(exc))
            return
        finally:
            w.cancel()
        stored = max(int(progress["stored"] or 0), report.new)
        if report.error:
            await backfill_queue.finish(engine, req.id, "failed", stored=stored, error=report.error)
        else:
            await backfill_queue.finish(engine, req.id, "done", stored=stored)
        ctx.metrics.observe_poll(cfg.source, new=report.new, edited=report.edited, alerts=report.alerts,
                                 requests=report.requests, error=bool(report.error),
                                 deferred=report.deferred_until is not None)
        event(log, logging.INFO, "backfill finished", channel=cfg.key, request=req.id, new=report.new,
              error=report.error or "")
        if report.alerts:
            ctx.wake(DRAIN_JOB)
