"""The service's outbox drain, woken while it runs: it drains once more right after (the alert queued meanwhile
leaves at once, not a period later), and never two drains at once (a real scheduler, real SQLite/PostgreSQL,
real Apprise to a real HTTP sink on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.alerts import deliver
from monitor.config import Settings
from monitor.runtime import open_runtime
from monitor.service import delivery
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext
from tests.test_alerts import WATCHLIST, Sink, channel, dest, ingest, post, sinks, story
from tests.tme_server import wait_until

__all__ = ["sinks"]  # the fixture, shared with test_alerts


async def test_a_wake_during_a_drain_drains_again_right_after_and_never_twice_at_once(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink = sinks()
    settings = make_settings('[delivery]\nrate_limit_per_minute = 1000\n\n' + WATCHLIST + dest("hook", sink.url),
                             db_url)
    # The period is long: only a wake can deliver the second alert within this test.
    monkeypatch.setattr(delivery, "DRAIN_SECONDS", 600.0)
    real_due, real_send = deliver.deliver_due, deliver.send
    drains, active, most = 0, 0, 0
    sending, release = asyncio.Event(), asyncio.Event()

    async def deliver_due(rt: Any, **kw: Any) -> int:
        nonlocal drains, active, most
        drains += 1
        active += 1
        most = max(most, active)
        try:
            return await real_due(rt, **kw)
        finally:
            active -= 1

    async def send(d: Any, msg: Any) -> deliver.SendResult:
        if not release.is_set():  # the first drain's send hangs until the test has queued and woken
            sending.set()
            await release.wait()
        return await real_send(d, msg)

    monkeypatch.setattr(deliver, "deliver_due", deliver_due)
    monkeypatch.setattr(deliver, "send", send)
    async with open_runtime(settings) as rt:
        ctx = ServiceContext(settings, None)
        ctx.rt = rt
        ctx.scheduler = AsyncIOScheduler(timezone="UTC")
        ctx.scheduler.start()
        try:
            ch = await channel(rt, "drain_wake", 3101)
            assert await ingest(rt, ch, [post(1, story(1, ["Росатом"]))]) == 1
            delivery.Delivery(ctx, ChannelBook(ctx)).add_job()
            await asyncio.wait_for(sending.wait(), 10)  # the first drain (0.5 s after start) is sending
            assert await ingest(rt, ch, [post(2, story(2, ["Газпром"]))]) == 1
            for _ in range(3):  # several wakes while it runs: one more drain, not three, not in parallel
                ctx.wake(DRAIN_JOB)
                await asyncio.sleep(0.2)
            release.set()
            start = time.monotonic()
            assert await wait_until(lambda: len(sink.bodies) >= 2, 10)
            waited = time.monotonic() - start
            await asyncio.sleep(0.3)
        finally:
            ctx.stopping = True
            ctx.scheduler.shutdown(wait=False)
    assert len(sink.bodies) == 2 and waited < 5  # without the rerun it would wait out the 600 s period
    assert drains == 2 and most == 1
