"""Several processes draining one outbox: a claim that lapses mid-pass is never sent again by its old holder
nor marked by it, and ``rate_limit_per_minute`` holds for the destination across processes (both databases,
real Apprise, a real HTTP sink on 127.0.0.1; the "other process" is a second engine on the same database)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from monitor import models as m
from monitor.alerts import deliver, outbox, ratelimit
from monitor.config import Settings
from monitor.db import sessionmaker
from monitor.runtime import open_runtime
from tests.test_alerts import WATCHLIST, Sink, alerts, channel, dest, ingest, post, sinks, story

__all__ = ["sinks"]  # the fixture, shared with test_alerts


async def test_a_claim_lost_mid_pass_is_neither_sent_again_nor_marked_by_its_old_holder(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink = sinks()
    settings = make_settings('[delivery]\nrate_limit_per_minute = 1000\n\n' + WATCHLIST + dest("hook", sink.url),
                             db_url)
    async with open_runtime(settings) as a, open_runtime(settings) as b:
        ch = await channel(a, "claims_one", 2001)
        await ingest(a, ch, [post(i, story(i, ["Росатом"])) for i in range(1, 4)])
        real_send = deliver.send
        b_delivered: list[int] = []
        taken_over = False

        async def send(d: Any, msg: Any) -> deliver.SendResult:
            nonlocal taken_over
            if not taken_over:
                taken_over = True
                # While A sends its first message, its claims lapse (a pass longer than the claim) and worker B,
                # another process, takes every row over and delivers it.
                async with sessionmaker(a.engine).begin() as s:
                    await s.execute(update(m.Alert).where(m.Alert.claimed_by == "A")
                                    .values(claimed_until=m.now() - outbox.LEASE))
                b_delivered.append(await deliver.deliver_destination(b.engine, b.settings, d, worker="B"))
            return await real_send(d, msg)

        monkeypatch.setattr(deliver, "send", send)
        a_delivered = await deliver.deliver_destination(a.engine, a.settings, a.settings.alerts[0], worker="A")
        rows = await alerts(a)
    assert b_delivered == [3] and a_delivered == 0  # A marked none of B's rows
    assert all(r.status == outbox.SENT and r.claimed_by is None for r in rows)
    # B sent all three; A had only its message in flight, which repeats once (same #code); A sent nothing more
    per_code = Counter(sink.codes())
    assert sorted(per_code.values()) == [1, 1, 2] and len(sink.bodies) == 4
    assert per_code[rows[0].code] == 2


async def test_rate_limit_slots_are_shared_by_every_process(
        make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(WATCHLIST, db_url)
    async with open_runtime(settings) as a, open_runtime(settings) as b:
        took = await asyncio.gather(*(ratelimit.take_slot(e.engine, "hook", 7) for e in [a, b] * 20))
        assert sum(took) == 7
        assert await ratelimit.free_slots(a.engine, "hook", 7) == 0
        assert await ratelimit.free_slots(b.engine, "hook", 10) == 3
        assert await ratelimit.take_slot(a.engine, "other", 1)  # each destination has its own allowance
        assert not await ratelimit.take_slot(b.engine, "other", 1)


async def test_two_workers_together_keep_the_destinations_rate_limit(
        make_settings: Callable[..., Settings], db_url: str, sinks: Callable[..., Sink],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink = sinks()
    settings = make_settings('[delivery]\nrate_limit_per_minute = 2\n\n' + WATCHLIST + dest("hook", sink.url),
                             db_url)
    async with open_runtime(settings) as a, open_runtime(settings) as b:
        ch = await channel(a, "rate_one", 2002)
        await ingest(a, ch, [post(i, story(i, ["Газпром"])) for i in range(1, 3)])
        real_send = deliver.send
        started = False

        async def send(d: Any, msg: Any) -> deliver.SendResult:
            nonlocal started
            if not started:
                # A is sending its first message of two; meanwhile more alerts come and B, another process,
                # drains them: both planned their pass while the minute's allowance looked free
                started = True
                await ingest(b, ch, [post(i, story(i, ["Газпром"])) for i in range(3, 5)])
                await deliver.deliver_destination(b.engine, b.settings, d, worker="B")
            return await real_send(d, msg)

        monkeypatch.setattr(deliver, "send", send)
        await deliver.deliver_destination(a.engine, a.settings, a.settings.alerts[0], worker="A")
        rows = await alerts(a)
    assert len(sink.bodies) == 2, sink.texts()  # the limit, for both processes together
    sent = [r for r in rows if r.status == outbox.SENT]
    pending = [r for r in rows if r.status == outbox.PENDING]
    assert len(sent) + len(pending) == 4 and pending and all(r.claimed_by is None for r in pending)
