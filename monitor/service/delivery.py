"""The delivery drain: every ``DRAIN_SECONDS`` (and right after a poll that queued alerts) one delivery
attempt for every due alert, claimed under this process's stable name; at start, alerts this process had
claimed before a crash go back to the outbox at once (the delivery itself is :mod:`monitor.alerts.deliver`)."""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import CursorResult, update

from monitor import models as m
from monitor.db import sessionmaker
from monitor.logs import event
from monitor.runtime import Runtime
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext, log

DRAIN_SECONDS = 2.0  # outbox drain period: alerts leave well within 10 s of the poll that queued them


class Delivery:
    """Drains the outbox while the service runs."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook) -> None:
        self.ctx = ctx
        self.book = book
        self.running = False  # a drain is in progress (only ever one)
        self.again = False  # the drain was woken while it ran: it drains once more right after

    def add_job(self) -> None:
        """Drain every ``DRAIN_SECONDS``; other parts wake it with ``ctx.wake(DRAIN_JOB)``."""
        # Two instances allowed, the second returning at once: a wake while a drain runs would otherwise be
        # skipped by the scheduler ("maximum instances"), and an alert queued meanwhile would wait a whole period.
        self.ctx.add_job(self.drain_job, DRAIN_JOB, DRAIN_SECONDS, first=0.5, max_instances=2)

    async def release_own_claims(self, rt: Runtime) -> None:
        """Alerts this process (same host and session, before a crash) had claimed but not marked go back to
        the outbox now, instead of after the claim's timeout. The drain claims under the same stable name."""
        assert self.book.leases is not None
        async with sessionmaker(rt.engine).begin() as sess:
            res = await sess.execute(update(m.Alert).where(m.Alert.claimed_by == self.book.leases.owner,
                                                           m.Alert.status == "pending")
                                     .values(claimed_by=None, claimed_until=None))
        n = cast("CursorResult[Any]", res).rowcount
        if n:
            event(log, logging.WARNING, "alerts claimed before a crash are due again", alerts=n)

    async def drain_job(self) -> None:
        """One delivery attempt for every due alert (never waits out a backoff); woken while a drain runs,
        it only asks that drain to go once more when it ends (never two drains at once)."""
        if self.running:
            self.again = True
            return
        self.running = True
        try:
            while True:
                self.again = False
                await self._drain()
                # No await between this test and clearing ``running``: a wake cannot slip in between and be lost.
                if not self.again or self.ctx.stopping:
                    break
        finally:
            self.running = False

    async def _drain(self) -> None:
        ctx = self.ctx
        with ctx.track():
            if ctx.stopping or ctx.rt is None or not ctx.rt.settings.alerts:
                return
            try:
                from monitor.alerts.deliver import deliver_due
            except ImportError:
                ctx.warn_once("deliver", "alert delivery is not available in this build")
                return
            leases = self.book.leases
            try:
                await deliver_due(ctx.rt, worker=leases.owner if leases else None)
            except Exception as exc:
                event(log, logging.ERROR, "alert delivery failed", error=f"{type(exc).__name__}: {exc}")
