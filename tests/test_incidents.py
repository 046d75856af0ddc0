"""Operator incidents of the Telethon channels: opened once with an operator alert (queued with the incident),
never a second time by the health check, and closed when the problem goes away (a poll gap too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from fake_telegram import FakeClock, FakeTelegram, fake_client, no_sleep
from sqlalchemy import select

from monitor import health
from monitor import models as m
from monitor.config import ChannelConfig, Settings
from monitor.jobs.base import PollReport
from monitor.jobs.telethon import TelethonJobs, build_budget
from monitor.runtime import Runtime, open_runtime

BODY = ('[[entities]]\nname = "Росатом"\n\n'
        '[[alerts]]\nname = "ops"\nurl = "json://127.0.0.1:9/ops"\noperator = true\n\n'
        '[[alerts]]\nname = "news"\nurl = "json://127.0.0.1:9/news"\n\n'
        '[[channels]]\nusername = "ops_secret"\n\n[[channels]]\nusername = "ops_gap"\n')


@pytest.fixture
async def rt(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(BODY, db_url)) as runtime:
        yield runtime


class Poller:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.server = FakeTelegram()
        self.clock = FakeClock()
        self.budget = build_budget(100000, clock=self.clock.monotonic)

    async def poll(self, *names: str) -> list[PollReport]:
        jobs = TelethonJobs(self.rt, client=fake_client(self.server), budget=self.budget, clock=self.clock,
                            sleep=no_sleep)
        try:
            return await jobs.poll([ChannelConfig(username=n) for n in names])
        finally:
            await jobs.aclose()


async def _incidents(rt: Runtime) -> list[m.Incident]:
    async with rt.store.sessions() as s:
        return list((await s.execute(select(m.Incident).order_by(m.Incident.id))).scalars())


async def _operator_alerts(rt: Runtime) -> list[m.Alert]:
    async with rt.store.sessions() as s:
        return list((await s.execute(select(m.Alert).where(m.Alert.kind == "operator")
                                     .order_by(m.Alert.id))).scalars())


async def test_unavailable_channel_alerts_the_operator_once_and_closes(rt: Runtime) -> None:
    p = Poller(rt)
    p.server.add(7600001, "ops_secret", private=True).post("x")
    p.server.add(7600002, "ops_gap").post("a")
    reports = await p.poll("ops_secret", "ops_gap")
    assert reports[0].unavailable and reports[1].error is None

    (inc,) = await _incidents(rt)
    assert (inc.kind, inc.subject, inc.closed_at) == ("channel_unavailable", "@ops_secret", None)
    assert inc.notified
    (alert,) = await _operator_alerts(rt)
    assert alert.destination == "ops" and alert.status == "pending" and "@ops_secret" in (alert.title or "")

    # the health check sees the same problem: no second incident, no second alert
    assert await health.check_incidents(rt.engine, rt.settings) == []
    await p.poll("ops_secret", "ops_gap")
    assert len(await _incidents(rt)) == 1 and len(await _operator_alerts(rt)) == 1

    # the channel can be read again: the incident closes (a later recurrence would alert again)
    p.clock.advance(7 * 3600)
    p.server.channels[7600001].private = False
    reports = await p.poll("ops_secret", "ops_gap")
    assert not reports[0].unavailable and reports[0].new == 1
    (inc,) = await _incidents(rt)
    assert inc.closed_at is not None
    assert await health.check_incidents(rt.engine, rt.settings) == []


async def test_poll_gap_alerts_the_operator_and_closes_when_a_poll_reaches_the_top(rt: Runtime) -> None:
    p = Poller(rt)
    ch = p.server.add(7600002, "ops_gap")
    ch.post("a")
    await p.poll("ops_gap")  # the baseline
    ch.post("b")
    hidden = ch.post("never returned", date=p.clock.now() - timedelta(minutes=5))
    ch.hidden.add(hidden)  # Telegram's dialog says it exists; history paging never returns it
    await p.poll("ops_gap")
    (inc,) = await _incidents(rt)
    assert (inc.kind, inc.subject, inc.closed_at) == ("poll_gap", "@ops_gap", None)
    (alert,) = await _operator_alerts(rt)
    assert alert.destination == "ops" and "@ops_gap" in (alert.title or "")
    # still short: still one incident, one alert
    await p.poll("ops_gap")
    assert len(await _incidents(rt)) == 1 and len(await _operator_alerts(rt)) == 1

    ch.hidden.clear()
    ch.post("c")
    reports = await p.poll("ops_gap")
    assert reports[0].error is None
    (inc,) = await _incidents(rt)
    assert inc.closed_at is not None, "a poll that reached Telegram's newest message closes the gap"
    assert len(await _operator_alerts(rt)) == 1


async def test_push_silent_and_account_down_incidents_have_their_own_titles(rt: Runtime) -> None:
    from monitor.jobs.accounts import ACCOUNT_DOWN
    from monitor.service.push import PUSH_SILENT

    # the subjects as monitor/service/push.py and monitor/jobs/accounts.py give them
    assert await health.open_incident(rt.engine, rt.settings, PUSH_SILENT, "telegram",
                                      "updatesTooLong; polled every 300 s again: @ops_gap")
    assert await health.open_incident(rt.engine, rt.settings, ACCOUNT_DOWN, "Telegram account reserve",
                                      "dead: AuthKeyUnregisteredError; its channels moved to main")
    silent, down = await _operator_alerts(rt)
    assert silent.title == "tgmonitor: push-обновления Telegram не приходят"
    assert "updatesTooLong" in (silent.body or "") and "@ops_gap" in (silent.body or "")
    assert down.title == "tgmonitor: аккаунт Telegram выведен из работы — reserve"
    assert "tgmonitor login --account reserve" in (down.body or "") and "AuthKeyUnregisteredError" in (down.body or "")
