"""Leases in the running service: which channels this process polls when several ``tgmonitor run`` share one
PostgreSQL. Renews them every third of ``[schedule] lease_seconds``, starts polling the channels it gains and
stops polling the ones it loses (the lease rules themselves are in :mod:`monitor.leases`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from monitor import models as m
from monitor.db import sessionmaker
from monitor.leases import Leases, owner_name
from monitor.logs import event
from monitor.models import now
from monitor.runtime import Runtime
from monitor.service.channels import ChannelBook
from monitor.service.context import ServiceContext, log
from monitor.service.polling import Poller
from monitor.service.telegram import TelegramLink


class LeaseKeeper:
    """Keeps this process's share of the channels and (un)schedules their polls as leases come and go."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, poller: Poller, link: TelegramLink) -> None:
        self.ctx = ctx
        self.book = book
        self.poller = poller
        self.link = link

    def open(self, rt: Runtime) -> Leases:
        """This process's leases, named after its host and session lock (stable across restarts). With
        ``[[telegram.accounts]]`` they follow the accounts' plan (a process claims what its accounts read best)."""
        owner, ttl = owner_name(self.ctx.lock.path), self.ctx.settings.schedule.lease_seconds
        if self.ctx.settings.telegram.accounts:
            from monitor.accounts.leases import AccountLeases
            from monitor.config import account_rate

            def rates() -> dict[str, int]:
                s = self.ctx.settings
                return {a.name: account_rate(s, a.name) for a in s.telegram.accounts}

            def channels() -> dict[int, tuple[str, float]]:
                s, book = self.ctx.settings, self.book
                return {rid: (book.channels[k].source, float(s.channel_interval(book.channels[k])))
                        for k, rid in book.row_ids.items() if k in book.channels}

            self.book.leases = AccountLeases(rt.engine, owner, ttl, rates=rates, channels=channels)
            return self.book.leases
        leases = self.book.leases = Leases(rt.engine, owner, ttl)
        return leases

    def add_job(self) -> None:
        """Renew the leases every third of their lifetime."""
        ttl = self.ctx.settings.schedule.lease_seconds
        self.ctx.add_job(self.lease_job, "leases", max(1.0, ttl / 3), first=ttl / 3)

    async def rebalance(self) -> None:
        """Take this process's share now (at start and after a reload); new channels poll at once."""
        assert self.book.leases is not None
        change = await self.book.leases.rebalance(self.book.row_ids.values(), self.book.polling)
        self.apply(change.gained, change.lost, first=True)

    def apply(self, gained: set[int], lost: set[int], *, first: bool = False,
              last_poll: dict[int, datetime | None] | None = None) -> None:
        """Stop polling the channels lost, start polling the ones gained (``first``: at once)."""
        assert self.ctx.scheduler is not None
        book = self.book
        for rid in lost:
            key = book.key_of(rid)
            if key is not None:
                self.poller.unschedule(key)
                event(log, logging.INFO, "lease given up", channel=key)
        for rid in gained:
            key = book.key_of(rid)
            if key is None:
                continue
            cfg = book.channels[key]
            if cfg.source in self.link.dead_sources:
                continue
            interval = self.ctx.settings.channel_interval(cfg)
            start = now()
            prev = (last_poll or {}).get(rid)
            if not first and prev is not None:
                # Taken over from another process: keep its rhythm instead of polling twice in one interval.
                start = max(start, prev + timedelta(seconds=interval))
            self.poller.schedule(key, start)
            if not first:
                event(log, logging.INFO, "lease taken", channel=key)

    async def lease_job(self) -> None:
        """Renew the leases, hand back the excess, claim free or expired ones."""
        ctx, book = self.ctx, self.book
        with ctx.track():
            if ctx.stopping or book.leases is None or ctx.rt is None:
                return
            try:
                change = await book.leases.rebalance(book.row_ids.values(), book.polling)
            except Exception as exc:
                event(log, logging.WARNING, "lease renewal failed", error=str(exc))
                ctx.database_failed(exc)
                return
            ctx.metrics.leased.set(len(change.held))
            if change.gained:
                async with sessionmaker(ctx.rt.engine)() as sess:
                    res = await sess.execute(select(m.Channel.id, m.Channel.last_poll_at)
                                             .where(m.Channel.id.in_(change.gained)))
                    last = {rid: t for rid, t in res.all()}
            else:
                last = {}
            self.apply(change.gained, change.lost, last_poll=last)
