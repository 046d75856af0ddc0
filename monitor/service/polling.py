"""The poll loop: ONE poll cycle per source. Each channel this process holds the lease of has a due time (its
last cycle's start plus its interval); a source's cycle job polls every channel of the source that is due —
or falls due within the cycle's spread — as one batch, then sleeps until the next channel falls due plus a
random spread of ``[schedule] jitter`` of the interval. After a poll: metrics, the poll time, waking the
drain, moving a channel deferred by a flood wait past it. Also the per-source edit/deletion re-reads.

Why one cycle and not one scheduler job per channel: a per-channel random spread cut 500 channels due
together into ~114 small batches a cycle, each with its own ``GetPeerDialogs`` call (Telegram's quiet-channel
probe, one per 100 channels), so a cycle cost ~114 requests instead of 5 and outran the request budget."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update

from monitor import models as m
from monitor.config import ChannelConfig
from monitor.db import sessionmaker
from monitor.jobs.base import PollReport
from monitor.logs import event
from monitor.models import now
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext, log, poll_cycle_job_id, reread_job_id
from monitor.service.runners import Runners
from monitor.service.telegram import TelegramLink

#: channels falling due this close after a cycle starts join it (at least; the jitter spread widens it)
GATHER_SECONDS = 1.0
#: a cycle's successor starts this long after it at the soonest
NEXT_CYCLE_MIN = 0.1
#: the period of a cycle job's own trigger: only a safety net, since every cycle sets its successor's time
CYCLE_SAFETY = 3600.0
#: a flood wait's end is spread by up to this much, so that the deferred channels do not all return at once
DEFER_SPREAD = 5.0


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What one poll cycle of one source did."""

    source: str
    channels: int
    requests: int
    new: int
    alerts: int
    errors: int
    seconds: float


class Poller:
    """Schedules and runs the poll cycles and re-reads of the channels this process holds."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners, link: TelegramLink) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.link = link
        #: key -> when the channel's next poll is due; exactly the channels scheduled here
        self.due: dict[str, datetime] = {}
        self.cycles: dict[str, int] = {}  # source -> cycles run
        self.history: deque[CycleStats] = deque(maxlen=50)  # the last cycles, newest last
        self.cycle_done = asyncio.Condition()  # notified after every cycle that polled (tests, benchmarks)
        self.running: set[str] = set()  # sources whose cycle is running now
        #: issue 12: key -> its interval now (push updates cover it: the reconcile interval; a busy web
        #: channel: its adaptive one), None for the configured one (see monitor/service/pace.py)
        self.interval_hook: Callable[[str], float | None] | None = None

    # ------------------------------------------------------------------ scheduling

    def interval(self, key: str) -> float:
        """Seconds between two polls of ``key``: its ``[[channels]] interval`` or ``[schedule] interval``;
        ``[schedule] reconcile_interval`` while push updates cover it (the poll then only closes gaps), and an
        adaptive one for a busy web channel."""
        if self.interval_hook is not None:
            iv = self.interval_hook(key)
            if iv is not None:
                return iv
        return self.ctx.settings.channel_interval(self.book.channels[key])

    def poll_soon(self, key: str, delay: float) -> None:
        """Poll ``key`` within ``delay`` seconds (push revealed a gap, or missed a post)."""
        cfg = self.book.channels.get(key)
        if key not in self.due or cfg is None:
            return
        when = now() + timedelta(seconds=delay)
        if when < self.due[key]:
            self.due[key] = when
            self._cycle_at(cfg.source, when)

    def schedule(self, key: str, start: datetime) -> None:
        """Poll ``key`` from ``start`` on, every its interval, in its source's cycle."""
        cfg = self.book.channels.get(key)
        if cfg is None:
            return
        self.due[key] = start
        self._cycle_at(cfg.source, start)

    def unschedule(self, key: str) -> None:
        """Stop polling ``key`` here (its lease went elsewhere or it left the configuration)."""
        self.due.pop(key, None)

    def reschedule(self, key: str) -> None:
        """A changed channel (on reload) keeps its next poll time, unless its new interval brings it closer."""
        cfg = self.book.channels.get(key)
        if key not in self.due or cfg is None:
            return
        sooner = now() + timedelta(seconds=self.interval(key))
        if sooner < self.due[key]:
            self.due[key] = sooner
            self._cycle_at(cfg.source, sooner)

    def _keys(self, source: str) -> list[str]:
        channels = self.book.channels
        return [k for k in self.due if k in channels and channels[k].source == source]

    def _spread(self, source: str) -> float:
        """The random spread of a source's cycle: ``[schedule] jitter`` of its shortest interval."""
        keys = self._keys(source)
        return self.ctx.settings.schedule.jitter * min((self.interval(k) for k in keys), default=0.0)

    def _cycle_at(self, source: str, when: datetime, *, force: bool = False) -> None:
        """Make the source's cycle run at ``when`` at the latest (``force``: exactly then)."""
        ctx = self.ctx
        if ctx.scheduler is None or ctx.stopping or (source in self.running and not force):
            return  # a running cycle sets its successor's time when it ends, from the due times
        job_id = poll_cycle_job_id(source)
        job = ctx.scheduler.get_job(job_id)
        if job is None:
            # The trigger's own period is only a safety net (a trigger firing while a long cycle runs would only
            # be skipped): every cycle sets its successor's time itself.
            # Two instances allowed, the second returning at once while the first runs: a run the scheduler
            # skipped for "maximum instances" would instead be rescheduled by the trigger alone (an hour later),
            # undoing the time the running cycle sets for its successor.
            ctx.add_job(self.cycle_job, job_id, CYCLE_SAFETY, args=(source,), next_run=when, max_instances=2)
        elif force or job.next_run_time is None or job.next_run_time > when:
            job.modify(next_run_time=when)

    def _next_cycle(self, source: str) -> None:
        """After a cycle: the next one when the first channel falls due, spread at random by the jitter."""
        if self.ctx.stopping or source in self.link.dead_sources:
            return
        dues = [self.due[k] for k in self._keys(source)]
        if not dues:
            self.ctx.remove_job(poll_cycle_job_id(source))  # nothing held here; schedule() brings it back
            return
        # Not sooner than a moment from now: the scheduler counts this cycle as running until its task's done
        # callback has run, and would skip (not delay) a successor that fell due before that.
        when = max(min(dues), now() + timedelta(seconds=NEXT_CYCLE_MIN))
        self._cycle_at(source, when + timedelta(seconds=random.uniform(0.0, self._spread(source))), force=True)

    def postpone(self, source: str, seconds: float) -> None:
        """The source cannot be reached: its next cycle waits ``seconds`` (the due channels stay due)."""
        if self.ctx.scheduler is not None and self.ctx.scheduler.get_job(poll_cycle_job_id(source)) is not None:
            self._cycle_at(source, now() + timedelta(seconds=max(seconds, NEXT_CYCLE_MIN)), force=True)

    # ------------------------------------------------------------------ one cycle

    async def cycle_job(self, source: str) -> None:
        """Poll every channel of ``source`` that is due, as one batch, and record the outcomes."""
        ctx, link = self.ctx, self.link
        if source in self.running:
            return  # the cycle running now sets its successor's time when it ends
        with ctx.track():
            if ctx.stopping or ctx.rt is None or self.book.leases is None or source in link.dead_sources:
                return
            if link.waiting(source):
                # Telegram cannot be reached: the cycle waits for the next connection attempt
                self.postpone(source, link.tg.waiting() + random.uniform(0, 2))
                return
            start = now()
            self.running.add(source)
            try:
                horizon = start + timedelta(seconds=max(GATHER_SECONDS, self._spread(source)))
                keys = [k for k in self._keys(source) if self.due[k] <= horizon
                        and self.book.row_ids.get(k) not in self.book.polling]
                if keys:
                    await self._poll(source, keys, start)
            finally:
                self.running.discard(source)
                if not link.waiting(source):
                    self._next_cycle(source)

    async def _poll(self, source: str, keys: list[str], start: datetime) -> None:
        book, link = self.book, self.link
        assert book.leases is not None
        rids = {k: book.row_ids[k] for k in keys if k in book.row_ids}
        try:
            renewed, busy = await book.leases.hold_many(rids.values())
        except Exception as exc:
            event(log, logging.WARNING, "lease check failed", source=source, channels=len(rids), error=str(exc))
            return  # the channels stay due: the next cycle tries again
        for k, rid in rids.items():
            if rid not in renewed and rid not in busy:
                self.unschedule(k)  # the lease went to another process
            elif rid in busy:
                self.due[k] = start + timedelta(seconds=self.interval(k))  # its row is being written: next time
        cfgs = [book.channels[k] for k, rid in rids.items() if rid in renewed]
        if not cfgs:
            return
        ids = {rids[c.key] for c in cfgs}
        book.polling.update(ids)
        t0 = time.monotonic()
        try:
            reports = await self.runners.get(source).poll(cfgs)
        except Exception as exc:
            if await link.absorb(exc):  # a dead session or no Telegram: the channels stay due
                return
            event(log, logging.ERROR, "poll failed", source=source, channels=len(cfgs),
                  error=f"{type(exc).__name__}: {exc}")
            self.ctx.database_failed(exc)
            reports = [PollReport(channel=c.key, error=str(exc)) for c in cfgs]
        finally:
            book.polling.difference_update(ids)
        if source == "telethon" and link.tg.down:
            await link.back()
        stats = await self._after_cycle(source, cfgs, reports, start, time.monotonic() - t0)
        self.history.append(stats)
        self.cycles[source] = self.cycles.get(source, 0) + 1
        async with self.cycle_done:
            self.cycle_done.notify_all()

    async def _after_cycle(self, source: str, cfgs: list[ChannelConfig], reports: list[PollReport | None],
                           start: datetime, seconds: float) -> CycleStats:
        ctx = self.ctx
        assert ctx.rt is not None
        total = PollReport(channel=source)
        errors = 0
        for cfg, rep in zip(cfgs, reports, strict=True):
            r = rep or PollReport(channel=cfg.key)
            ctx.metrics.observe_poll(source, new=r.new, edited=r.edited, alerts=r.alerts, requests=r.requests,
                                     error=bool(r.error), deferred=r.deferred_until is not None)
            total.new += r.new
            total.edited += r.edited
            total.alerts += r.alerts
            total.requests += r.requests
            errors += bool(r.error)
            # a quiet poll is the common case: 500 of them a cycle would bury the log
            level = logging.WARNING if r.error else logging.INFO if (r.new or r.edited or r.alerts) else logging.DEBUG
            event(log, level, "poll", channel=cfg.key, new=r.new, edited=r.edited, alerts=r.alerts,
                  requests=r.requests, error=r.error or "")
            if cfg.key in self.due:  # not if it was unscheduled meanwhile (lease lost, reload)
                nxt = start + timedelta(seconds=self.interval(cfg.key))
                if r.deferred_until is not None:
                    until = r.deferred_until if r.deferred_until.tzinfo else r.deferred_until.replace(
                        tzinfo=now().tzinfo)
                    # a flood wait: this channel waits for it (plus a little spread), the others go on
                    nxt = max(nxt, until + timedelta(seconds=random.uniform(0, DEFER_SPREAD)))
                self.due[cfg.key] = nxt
        self.runners.budget_gauges(source)
        event(log, logging.WARNING if errors else logging.INFO, "poll cycle", source=source, channels=len(cfgs),
              new=total.new, edited=total.edited, alerts=total.alerts, requests=total.requests, errors=errors,
              seconds=round(seconds, 2))
        last = cfgs[-1].key if len(cfgs) == 1 else f"{len(cfgs)} {source} channels"
        ctx.last_poll = (last, now(), "error" if errors else "ok")
        try:
            # one statement for the whole cycle (500 channels: one write, not 500)
            async with sessionmaker(ctx.rt.engine).begin() as s:
                await s.execute(update(m.Channel).where(m.Channel.id.in_([self.book.row_ids[c.key] for c in cfgs
                                                                           if c.key in self.book.row_ids]))
                                .values(last_poll_at=now()))
        except Exception as exc:
            event(log, logging.WARNING, "could not record the poll time", source=source, error=str(exc))
            ctx.database_failed(exc)
        if total.alerts:
            ctx.wake(DRAIN_JOB)
        ctx.update_status()
        return CycleStats(source, len(cfgs), total.requests, total.new, total.alerts, errors, seconds)

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
            except Exception as exc:
                if await link.absorb(exc):
                    return
                event(log, logging.WARNING, "re-read failed", source=source, error=str(exc))
