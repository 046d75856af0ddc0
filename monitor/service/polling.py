"""The poll loop: one APScheduler job per channel this process holds the lease of (its interval, a random
spread of ``[schedule] jitter``, one run at a time, missed runs coalesced), what happens after a poll (metrics,
the poll time, waking the drain, waiting out a flood wait), and the per-source edit/deletion re-reads."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import ChannelConfig
from monitor.jobs.base import PollReport, SessionDead, source_unreachable
from monitor.logs import event
from monitor.models import now
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext, log, poll_job_id, reread_job_id
from monitor.service.runners import Runners
from monitor.service.telegram import TelegramLink


class Poller:
    """Schedules and runs the polls and re-reads of the channels this process holds."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners, link: TelegramLink) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.link = link

    # ------------------------------------------------------------------ scheduling

    def schedule(self, key: str, start: datetime) -> None:
        """Poll ``key`` every its interval (± jitter), the first time at ``start``."""
        s = self.ctx.settings
        interval = s.channel_interval(self.book.channels[key])
        self.ctx.add_job(self.poll_job, poll_job_id(key), interval, jitter=s.schedule.jitter * interval,
                         args=(key,), next_run=start)

    def unschedule(self, key: str) -> None:
        """Stop polling ``key`` here (its lease went elsewhere or it left the configuration)."""
        self.ctx.remove_job(poll_job_id(key))

    def reschedule(self, key: str) -> None:
        """A changed channel keeps its next poll time and gets its new interval (on reload)."""
        sched = self.ctx.scheduler
        if sched is None or sched.get_job(poll_job_id(key)) is None:
            return
        s = self.ctx.settings
        iv = s.channel_interval(self.book.channels[key])
        sched.reschedule_job(poll_job_id(key), trigger=IntervalTrigger(
            seconds=iv, jitter=s.schedule.jitter * iv or None, timezone="UTC"))

    # ------------------------------------------------------------------ one poll

    async def poll_job(self, key: str) -> None:
        """Poll one channel (batched with the others of its source falling due now) and record the outcome."""
        ctx, book, link = self.ctx, self.book, self.link
        with ctx.track():
            cfg = book.channels.get(key)
            rid = book.row_ids.get(key)
            if ctx.stopping or cfg is None or rid is None or cfg.source in link.dead_sources:
                return
            if link.waiting(cfg.source):
                link.postpone(key)  # Telegram cannot be reached: wait for the next connection attempt
                return
            assert book.leases is not None and ctx.rt is not None
            try:
                mine = await book.leases.hold(rid)
                if mine is None:
                    return
                if not mine:
                    self.unschedule(key)
                    return
            except Exception as exc:
                event(log, logging.WARNING, "lease check failed", channel=key, error=str(exc))
                return
            book.polling.add(rid)
            try:
                report = await self.runners.get(cfg.source).poll(cfg)
            except SessionDead as exc:
                await link.session_died(str(exc))
                return
            except Exception as exc:
                unreachable = source_unreachable(exc)
                if unreachable is not None:
                    await link.unreachable(unreachable)
                    link.postpone(key)
                    return
                event(log, logging.ERROR, "poll failed", channel=key, error=f"{type(exc).__name__}: {exc}")
                report = PollReport(channel=key, error=str(exc))
            finally:
                book.polling.discard(rid)
            if cfg.source == "telethon" and link.tg.down:
                await link.back()
            await self._after_poll(cfg, rid, report or PollReport(channel=key))

    async def _after_poll(self, cfg: ChannelConfig, rid: int, r: PollReport) -> None:
        ctx = self.ctx
        assert ctx.rt is not None
        ctx.metrics.observe_poll(cfg.source, new=r.new, edited=r.edited, alerts=r.alerts, requests=r.requests,
                                 error=bool(r.error), deferred=r.deferred_until is not None)
        self.runners.budget_gauges(cfg.source)
        event(log, logging.WARNING if r.error else logging.INFO, "poll", channel=cfg.key, new=r.new,
              edited=r.edited, alerts=r.alerts, requests=r.requests, error=r.error or "")
        ctx.last_poll = (cfg.key, now(), "error" if r.error else "ok")
        try:
            await ctx.rt.store.update_channel(rid, last_poll_at=now())
        except Exception as exc:
            event(log, logging.WARNING, "could not record the poll time", channel=cfg.key, error=str(exc))
        if r.alerts:
            ctx.wake(DRAIN_JOB)
        if r.deferred_until is not None and ctx.scheduler is not None:
            job = ctx.scheduler.get_job(poll_job_id(cfg.key))
            until = r.deferred_until if r.deferred_until.tzinfo else r.deferred_until.replace(tzinfo=now().tzinfo)
            if job is not None and (job.next_run_time is None or job.next_run_time < until):
                # A flood wait: this channel's next poll waits for it (plus a little jitter), others go on.
                job.modify(next_run_time=until + timedelta(seconds=random.uniform(0, 5)))
        ctx.update_status()

    # ------------------------------------------------------------------ re-reads

    def schedule_rereads(self) -> None:
        """The edit/deletion re-read, for sources whose jobs offer ``reread(channels)``."""
        s = self.ctx.settings
        channels = self.book.channels
        for source in {c.source for c in channels.values()}:
            if source in self.link.dead_sources:
                continue
            if not callable(getattr(self.runners.get(source).jobs, "reread", None)):
                continue
            intervals = [s.channel_interval(c) for c in channels.values() if c.source == source]
            every = min(intervals) * s.schedule.reread_every
            self.ctx.add_job(self.reread_job, reread_job_id(source), every, first=every, jitter=0.1 * every,
                             args=(source,))

    async def reread_job(self, source: str) -> None:
        """Re-read the recent posts of the channels of ``source`` held here, for edits and deletions."""
        ctx, book, link = self.ctx, self.book, self.link
        with ctx.track():
            if ctx.stopping or source in link.dead_sources or book.leases is None:
                return
            held = book.leases.held
            chans = [c for k, c in book.channels.items() if c.source == source and book.row_ids.get(k) in held]
            if not chans:
                return
            try:
                await self.runners.get(source).jobs.reread(chans)  # type: ignore[attr-defined]
            except SessionDead as exc:
                await link.session_died(str(exc))
            except Exception as exc:
                unreachable = source_unreachable(exc)
                if unreachable is not None:
                    await link.unreachable(unreachable)
                    return
                event(log, logging.WARNING, "re-read failed", source=source, error=str(exc))
