"""Push updates (issue 12) against the in-process fake Telegram: real Telethon clients run their own connect,
update loop, MessageBox (pts, gaps, getChannelDifference) and catch-up over the fake sender, which pushes real
``UpdateNewChannelMessage`` / ``UpdateEditChannelMessage`` / ``UpdatesTooLong`` objects. What a push stores
goes through the poll's own ingest path into the real outbox (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_telegram import FakeClock, FakeTelegram, fake_client
from sqlalchemy import func, select
from telethon import TelegramClient
from telethon.sessions import SQLiteSession, StringSession

from monitor import arrivals
from monitor import models as m
from monitor.config import ChannelConfig, Settings
from monitor.jobs.push import FALLBACK, POLL, PUSH, PushReceiver
from monitor.jobs.telethon import TelethonJobs, build_budget
from monitor.runtime import Runtime, open_runtime
from monitor.sources.telethon import enable_updates, watch_state_loss
from tests.tme_server import wait_until

BODY = """
[schedule]
requests_per_minute = 100000
reread_every = 1000

[[entities]]
name = "Росатом"

[[entities]]
name = "Газпром"

[[alerts]]
name = "sink"
url = "json://127.0.0.1:9/hook"
"""


@dataclass
class Listener:
    """What the service part would be told (tests/benchmark play the scheduler themselves)."""

    modes: dict[str, str] = field(default_factory=dict)
    soon: list[tuple[str, float]] = field(default_factory=list)
    alerts: int = 0
    silent: list[tuple[list[str], str]] = field(default_factory=list)
    healthy: int = 0

    def mode_changed(self, key: str, mode: str) -> None:
        self.modes[key] = mode

    def poll_soon(self, key: str, delay: float) -> None:
        self.soon.append((key, delay))

    def alerts_queued(self) -> None:
        self.alerts += 1

    async def push_silent(self, keys: Any, reason: str) -> None:
        self.silent.append((list(keys), reason))

    async def push_healthy(self) -> None:
        self.healthy += 1


@dataclass
class Env:
    rt: Runtime
    server: FakeTelegram
    clock: FakeClock
    budget: Any
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    jobs: TelethonJobs | None = None
    receiver: PushReceiver | None = None
    listener: Listener = field(default_factory=Listener)
    handed_pts: int | None = None  # the server's account pts up to which the receiver has been handed updates

    async def start(self, session: Any = None) -> PushReceiver:
        """A service's Telethon jobs with push on (a client built to receive updates), connected."""
        client = fake_client(self.server, session if session is not None else StringSession(), updates=True)
        self.jobs = TelethonJobs(self.rt, client=client, budget=self.budget, clock=self.clock)
        self.listener = Listener()
        self.receiver = PushReceiver(self.jobs, lambda: self.channels, self.listener, album_settle=0.05,
                                     gap_delay=0.0)
        await self.jobs._open()
        if self.handed_pts is None:  # a new session starts at the server's state: nothing older comes
            self.handed_pts = self.server.account_pts
        return self.receiver

    async def stop(self) -> None:
        assert self.jobs is not None
        await self.jobs.aclose()

    async def poll(self) -> list[Any]:
        assert self.jobs is not None
        return await self.jobs.poll(list(self.channels.values()))

    async def settle(self, expect: int | None = None, within: float = 10) -> None:
        """Wait until Telethon's update loop has handed the receiver every update published since the last
        settle (``expect``: that many instead, e.g. one state loss), then store it all. Every channel event
        consumes one account pts on the server, whether pushed, left in a pts gap (Telethon fills it through
        getChannelDifference) or published while the client was down (caught up at connect); an update
        dropped "silent" or for a channel the account is not in consumes none."""
        r = self.receiver
        assert r is not None and self.handed_pts is not None
        want = self.server.account_pts - self.handed_pts if expect is None else expect
        assert await wait_until(lambda: r.queue.qsize() >= want, within), (
            f"Telethon handed over {r.queue.qsize()} of {want} updates")
        self.handed_pts = self.server.account_pts
        await r.drain()

    async def quiet(self, seconds: float = 0.3) -> None:
        """Nothing may arrive (Telegram pushes nothing): give Telethon's update loop ``seconds`` to hand
        something over all the same, then store whatever came, for the test to assert it is nothing. The
        updates published meanwhile are not waited for later: a client that never had an update of the
        channel knows no pts to see a gap from, so they come only through a poll."""
        await asyncio.sleep(seconds)  # the scenario: a bounded time for what must not happen
        assert self.receiver is not None
        self.handed_pts = self.server.account_pts
        await self.receiver.drain()

    async def posts(self) -> list[m.Post]:
        async with self.rt.store.sessions() as s:
            return list((await s.execute(select(m.Post).order_by(m.Post.channel_id, m.Post.message_id))).scalars())

    async def alerts_per_post(self) -> dict[int, int]:
        async with self.rt.store.sessions() as s:
            rows = await s.execute(select(m.Alert.post_id, func.count()).where(m.Alert.kind == "match")
                                   .group_by(m.Alert.post_id))
            return {int(p): int(n) for p, n in rows}

    async def row(self, key: str) -> m.Channel:
        return next(r for r in await self.rt.store.channels() if r.config_ref == key)


@pytest.fixture
async def env(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[Env]:
    settings = make_settings(BODY, db_url)
    async with open_runtime(settings) as rt:
        clock = FakeClock()
        e = Env(rt, FakeTelegram(), clock, build_budget(100000, clock=clock.monotonic))
        try:
            yield e
        finally:
            if e.jobs is not None:
                await e.jobs.aclose()


def now_post(env: Env, ch: Any, text: str, **kw: Any) -> int:
    """A post dated now on the test's clock (pushed to the listening clients as it is made)."""
    return int(ch.post(text, date=env.clock.now(), **kw))


# --------------------------------------------------------------------------- the seams this relies on


def test_telethon_update_seams_have_not_moved() -> None:
    """If this fails, Telethon changed the private flags and queue push relies on (see sources/telethon.py)."""
    client = TelegramClient(StringSession(), 1, "0" * 32, receive_updates=False)
    assert client._no_updates is True and client._catch_up is False
    enable_updates(client)
    assert client._no_updates is False and client._catch_up is True
    assert client._updates_queue is client._sender._updates_queue, "the sender no longer feeds the client's queue"
    seen: list[int] = []
    watch_state_loss(client, lambda: seen.append(1))
    from telethon.tl import types

    client._sender._updates_queue.put_nowait(types.UpdatesTooLong())  # what MTProtoSender does on the wire
    asyncio.run(client._updates_queue.put(types.UpdatesTooLong()))  # what catch_up() does: not a loss
    assert seen == [1] and client._updates_queue.qsize() == 2


# --------------------------------------------------------------------------- a push alerts with no poll


async def test_pushed_post_is_stored_and_alerted_without_a_poll(env: Env) -> None:
    ch = env.server.add(5001, "push_news")
    for i in range(3):
        ch.post(f"старый пост {i}")
    env.channels = {"@push_news": ChannelConfig(username="push_news")}
    r = await env.start()
    await env.poll()  # the first poll: baseline at 3
    await r.probe()
    assert env.listener.modes == {"@push_news": PUSH}
    history = env.server.count("GetHistoryRequest")
    mid = now_post(env, ch, "Срочно: Росатом подписал контракт")
    await env.settle()
    assert env.server.count("GetHistoryRequest") == history  # nothing was polled
    post = next(p for p in await env.posts() if p.message_id == mid)
    assert post.arrival == "push" and post.seen_at is not None and not post.push_missed
    assert (await env.alerts_per_post()) == {post.id: 1}
    assert env.listener.alerts == 1
    row = await env.row("@push_news")
    assert row.cursor == mid  # every id below it stored: the cursor moved with the push
    # the reconciling poll finds nothing more to do and stores nothing twice
    await env.poll()
    assert [p.message_id for p in await env.posts()] == [1, 2, 3, mid]
    assert (await env.alerts_per_post()) == {post.id: 1}


async def test_push_above_a_gap_stores_the_post_and_leaves_the_cursor(env: Env) -> None:
    ch = env.server.add(5002, "gap_news")
    for i in range(100):
        ch.post(f"старый пост {i}")
    env.channels = {"@gap_news": ChannelConfig(username="gap_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    env.server.drop_plan = ["silent"] * 4  # 101–104 never pushed, not in any difference either
    ids = [now_post(env, ch, f"Росатом: новость {i}") for i in range(5)]
    assert ids == [101, 102, 103, 104, 105]
    await env.settle()
    stored = {p.message_id: p for p in await env.posts()}
    assert 105 in stored and not {101, 102, 103, 104} & set(stored)
    assert (await env.row("@gap_news")).cursor == 100  # 101–104 are not stored: the cursor waits for the poll
    assert env.listener.soon == [("@gap_news", 0.0)]
    await env.poll()  # the poll the gap asked for
    stored = {p.message_id: p for p in await env.posts()}
    assert {101, 102, 103, 104, 105} <= set(stored)
    assert (await env.row("@gap_news")).cursor == 105
    assert [stored[i].arrival for i in ids] == ["poll"] * 4 + ["push"]
    assert [stored[i].push_missed for i in ids] == [True] * 4 + [False]
    assert r.stats.missed == {"@gap_news": 4}
    assert sorted((await env.alerts_per_post()).values()) == [1] * 5


async def test_album_pushed_as_separate_updates_is_one_post(env: Env) -> None:
    ch = env.server.add(5003, "album_news")
    ch.post("старый пост")
    env.channels = {"@album_news": ChannelConfig(username="album_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    ids = ch.album("Росатом: фоторепортаж", 3, date=env.clock.now())
    await env.settle()
    posts = [p for p in await env.posts() if p.message_id > 1]
    assert len(posts) == 1 and posts[0].message_id == ids[0] and sorted(posts[0].member_ids or []) == ids
    assert (await env.row("@album_news")).cursor == ids[-1]
    assert list((await env.alerts_per_post()).values()) == [1]


async def test_edit_pushed_is_a_new_version_alerting_only_new_entities(env: Env) -> None:
    ch = env.server.add(5004, "edit_news")
    ch.post("старый пост")
    env.channels = {"@edit_news": ChannelConfig(username="edit_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    mid = now_post(env, ch, "Росатом построит станцию")
    await env.settle()
    ch.edit(mid, "Росатом и Газпром построят станцию", env.clock.now())
    await env.settle()
    post = next(p for p in await env.posts() if p.message_id == mid)
    assert post.version == 2 and post.text == "Росатом и Газпром построят станцию"
    async with env.rt.store.sessions() as s:
        alerted = [list(a.entity_ids) for a in (await s.execute(
            select(m.Alert).where(m.Alert.post_id == post.id).order_by(m.Alert.id))).scalars()]
    assert alerted == [["росатом"], ["газпром"]]


# --------------------------------------------------------------------------- 1,000 posts, 5 % of updates dropped


async def test_thousand_posts_with_dropped_updates_all_stored_and_alerted_once(env: Env) -> None:
    chans = [env.server.add(5100 + i, f"bulk_{i:02d}") for i in range(10)]
    for ch in chans:
        ch.post("старый пост")
    env.channels = {f"@bulk_{i:02d}": ChannelConfig(username=f"bulk_{i:02d}") for i in range(10)}
    r = await env.start()
    await env.poll()
    await r.probe()
    assert set(env.listener.modes.values()) == {PUSH}
    env.server.drop_rate = 0.05  # 5 % of the updates never arrive: lost for good ("silent")
    for n in range(1000):
        now_post(env, chans[n % 10], f"Росатом: сообщение {n}")
        if n % 100 == 99:
            await env.settle()
    await env.settle()
    dropped = [(c, mid) for c, mid, how in env.server.dropped]
    assert 30 <= len(dropped) <= 75  # 5 % of 1,000, give or take chance
    # reconciliation: the probe finds what push left behind once the grace period has passed, polls close it
    env.clock.advance(60)
    await r.probe()
    await env.poll()
    posts = await env.posts()
    new = [p for p in posts if p.message_id > 1]
    assert len(new) == 1000 and len({(p.channel_id, p.message_id) for p in new}) == 1000
    per_post = await env.alerts_per_post()
    assert len(per_post) == 1000 and set(per_post.values()) == {1}
    by_key = {(p.channel_id, p.message_id): p for p in new}
    rows = {r_.tg_id: r_ for r_ in await env.rt.store.channels()}
    missed = {(rows[c].id, mid) for c, mid in dropped}
    assert {k for k, p in by_key.items() if p.push_missed} == missed
    assert {k for k, p in by_key.items() if p.arrival == "push"} == set(by_key) - missed
    assert sum(r.stats.missed.values()) == len(dropped)
    counts = await arrivals.arrival_counts(env.rt.engine)
    assert sum(c.get("push_missed", 0) for c in counts.values()) == len(dropped)
    assert all(row.cursor == chans[0].top() for row in rows.values())


async def test_updates_lost_in_a_pts_gap_come_back_through_get_channel_difference(env: Env) -> None:
    ch = env.server.add(5005, "pts_news")
    ch.post("старый пост")
    env.channels = {"@pts_news": ChannelConfig(username="pts_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    now_post(env, ch, "Росатом: первое обновление")  # Telethon learns the channel's pts from it
    await env.settle()
    env.server.drop_plan = ["gap", "deliver"]  # the pts moves, the update never comes: Telethon sees the gap
    ids = [now_post(env, ch, f"Росатом: {i}") for i in range(2)]
    await env.settle()  # Telethon waits 0.5 s for the gap to fill, then asks getChannelDifference
    assert env.server.count("GetChannelDifferenceRequest") >= 1
    posts = {p.message_id: p for p in await env.posts()}
    assert all(posts[i].arrival == "push" for i in ids)
    assert (await env.row("@pts_news")).cursor == ids[-1]


# --------------------------------------------------------------------------- restart, silence, state lost


async def test_restart_catches_up_what_was_published_while_down(env: Env, tmp_path: Path) -> None:
    ch = env.server.add(5006, "restart_news")
    ch.post("старый пост")
    env.channels = {"@restart_news": ChannelConfig(username="restart_news")}
    session = str(tmp_path / "tg")
    r = await env.start(SQLiteSession(session))
    await env.poll()
    await r.probe()
    before = now_post(env, ch, "Росатом: до остановки")
    await env.settle()
    await env.stop()  # the update state goes to the session file
    down = [now_post(env, ch, f"Росатом: пока сервис стоял {i}") for i in range(3)]
    r = await env.start(SQLiteSession(session))  # catch_up: getDifference → getChannelDifference
    await env.settle()
    assert env.server.count("GetChannelDifferenceRequest") >= 1
    posts = {p.message_id: p for p in await env.posts()}
    assert all(posts[i].arrival == "push" for i in down)
    await env.poll()  # the startup poll finds nothing left
    posts2 = await env.posts()
    assert len(posts2) == 1 + 1 + 3 and len({p.message_id for p in posts2}) == 5
    assert set((await env.alerts_per_post()).values()) == {1} and len(await env.alerts_per_post()) == 4
    assert (await env.row("@restart_news")).cursor == down[-1] > before


async def test_silent_channel_falls_back_to_polling_and_recovers(env: Env) -> None:
    ch = env.server.add(5007, "quiet_news")
    ch.post("старый пост")
    env.channels = {"@quiet_news": ChannelConfig(username="quiet_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    env.server.push = False  # Telegram stops pushing this account's updates
    mid = now_post(env, ch, "Росатом: никто не сообщил")
    await env.quiet()
    assert mid not in {p.message_id for p in await env.posts()}
    env.clock.advance(60)  # older than the grace period
    r.silent_after = 0.0
    await r.probe()
    assert env.listener.modes["@quiet_news"] == FALLBACK
    assert env.listener.soon and env.listener.soon[-1][0] == "@quiet_news"
    assert env.listener.silent and "no update came" in env.listener.silent[0][1]
    await env.poll()
    post = next(p for p in await env.posts() if p.message_id == mid)
    assert post.arrival == "poll" and post.push_missed
    env.server.push = True
    now_post(env, ch, "Росатом: снова пришло")
    await env.settle()
    assert env.listener.modes["@quiet_news"] == PUSH and env.listener.healthy == 1


async def test_updates_too_long_drops_every_channel_back_to_polling(env: Env) -> None:
    chans = [env.server.add(5200 + i, f"lost_{i}") for i in range(3)]
    for ch in chans:
        ch.post("старый пост")
    env.channels = {f"@lost_{i}": ChannelConfig(username=f"lost_{i}") for i in range(3)}
    r = await env.start()
    await env.poll()
    await r.probe()
    difference = env.server.count("GetDifferenceRequest")
    env.server.too_long()  # Telegram: too many updates, fetch the difference
    await env.settle(expect=1)  # the state loss (handed over at once, before Telethon acts on it)
    # Telethon refetched the state itself
    assert await wait_until(lambda: env.server.count("GetDifferenceRequest") > difference, 10)
    assert set(env.listener.modes.values()) == {FALLBACK}
    assert "updatesTooLong" in env.listener.silent[0][1] and sorted(env.listener.silent[0][0]) == sorted(
        env.channels)
    assert r.stats.state_lost == 1


async def test_channels_not_joined_are_polled_only(env: Env) -> None:
    joined = env.server.add(5008, "joined_news")
    other = env.server.add(5009, "public_news", joined=False)
    for ch in (joined, other):
        ch.post("старый пост")
    env.channels = {"@joined_news": ChannelConfig(username="joined_news"),
                    "@public_news": ChannelConfig(username="public_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    assert env.listener.modes == {"@joined_news": PUSH}  # the other was never anything but polled
    assert r.mode("@public_news") == POLL and r.interval("@public_news") == 300
    assert r.interval("@joined_news") == 900
    pushed = env.server.pushed
    now_post(env, other, "Росатом: канал без подписки")
    await env.settle()
    assert env.server.pushed == pushed  # no update for a channel the account is not in
    await env.poll()
    row = await env.row("@public_news")
    post = next(p for p in await env.posts() if p.channel_id == row.id and p.message_id == 2)
    assert post.arrival == "poll" and not post.push_missed


async def test_latency_is_post_date_to_alert_sent(env: Env) -> None:
    ch = env.server.add(5010, "lat_news")
    ch.post("старый пост")
    env.channels = {"@lat_news": ChannelConfig(username="lat_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    base = env.clock.now()
    for i, delay in enumerate((1, 2, 3, 4, 100)):
        ch.post(f"Росатом {i}", date=base - timedelta(seconds=delay))
    await env.settle()
    async with env.rt.store.sessions.begin() as s:
        for a in (await s.execute(select(m.Alert))).scalars():
            a.status, a.sent_at = "sent", base
    lat = await arrivals.alert_latency(env.rt.engine, now=base)
    assert list(lat) == ["@lat_news"]
    assert lat["@lat_news"].alerts == 5 and lat["@lat_news"].p50 == 3.0 and 4 < lat["@lat_news"].p95 < 100


# --------------------------------------------------------------------------- the real service


def _service_config(db: Path, sink_port: int, names: list[str], *, push: bool) -> str:
    from tests.service_helpers import factory_spec

    chans = "".join(f'\n[[channels]]\nusername = "{n}"\n' for n in names)
    return (f'[database]\nurl = "sqlite:///{db}"\n\n'
            f'[telegram]\nclient_factory = "{factory_spec()}"\npush = {"true" if push else "false"}\n\n'
            f'[schedule]\nrequests_per_minute = 100000\n\n'
            f'[[entities]]\nname = "Росатом"\n\n'
            f'[[alerts]]\nname = "sink"\nurl = "json://127.0.0.1:{sink_port}/hook"\n{chans}')


async def test_service_delivers_a_pushed_post_in_seconds_without_polling(
        tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    import monitor.service.push as service_push
    from tests.service_helpers import InProcService
    from tests.tme_server import alert_sink

    monkeypatch.setattr(service_push, "PROBE_FIRST", 0.5)
    monkeypatch.setattr(service_push, "PROBE_EVERY", 1.0)  # (a probe before the first poll finds nothing yet)
    server = FakeTelegram()
    ch = server.add(5300, "svc_push")
    ch.post("старый пост")
    with alert_sink() as (sink, port):
        settings = make_settings(_service_config(tmp_path / "s.db", port, ["svc_push"], push=True))
        async with InProcService(settings, server) as svc:
            assert await svc.wait_cycles("telethon", 1, 60)  # the first poll: the baseline
            pusher = svc.service.pusher
            assert pusher.receiver is not None
            assert await wait_until(
                lambda: pusher.receiver is not None and pusher.receiver.mode("@svc_push") == PUSH, 20)
            poller = svc.service.poller
            assert poller.interval("@svc_push") == 900  # reconciled, no longer polled every 300 s
            history, cycles = server.count("GetHistoryRequest"), poller.cycles["telethon"]
            t0 = asyncio.get_running_loop().time()
            ch.post("Росатом: срочная новость", date=datetime.now(UTC))
            assert await wait_until(lambda: sink.count() == 1, 15)
            took = asyncio.get_running_loop().time() - t0
            assert server.count("GetHistoryRequest") == history and poller.cycles["telethon"] == cycles
            assert took < 5, f"a pushed post took {took:.1f} s to reach the sink"
            assert "Росатом" in sink.texts()[0]
        assert svc.task is not None and svc.task.result() == 0
    from tests.service_helpers import q

    assert q(tmp_path / "s.db", "select arrival, push_missed from posts where message_id = 2") == [("push", 0)]
    assert q(tmp_path / "s.db", "select count(*) from alerts where sent_at is not null") == [(1,)]


async def test_service_with_push_off_polls_as_before(
        tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    from tests.service_helpers import InProcService
    from tests.tme_server import alert_sink

    server = FakeTelegram()
    ch = server.add(5301, "svc_nopush")
    ch.post("старый пост")
    with alert_sink() as (_sink, port):
        settings = make_settings(_service_config(tmp_path / "s.db", port, ["svc_nopush"], push=False))
        async with InProcService(settings, server) as svc:
            assert await svc.wait_cycles("telethon", 1, 60)
            assert svc.service.pusher.receiver is None
            assert svc.service.poller.interval("@svc_nopush") == 300
            ch.post("Росатом: новость")
            await asyncio.sleep(0.3)  # the scenario: a bounded time for an update that must not come
            assert not server.listeners and server.pushed == 0  # the client never asked for updates
            sched = svc.service.ctx.scheduler
            assert sched is not None and sched.get_job("push-probe") is None
        assert svc.task is not None and svc.task.result() == 0
    assert server.count("GetDifferenceRequest") == 0 and server.count("GetConfigRequest") == 0


async def test_status_shows_latency_and_posts_push_missed(env: Env, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli import main

    ch = env.server.add(5011, "stat_news")
    ch.post("старый пост")
    env.channels = {"@stat_news": ChannelConfig(username="stat_news")}
    r = await env.start()
    await env.poll()
    await r.probe()
    env.server.drop_plan = ["silent"]
    env.clock.advance(100)  # both posts below are published while push listens
    base = env.clock.now()
    ch.post("Росатом: потеряно", date=base - timedelta(seconds=40))
    ch.post("Росатом: пришло", date=base - timedelta(seconds=2))
    await env.settle()
    await env.poll()  # closes the gap push left
    async with env.rt.store.sessions.begin() as s:
        for a in (await s.execute(select(m.Alert))).scalars():
            a.status, a.sent_at = "sent", datetime.now(UTC)
    cfg = str(tmp_path / "tgmonitor.toml")
    res = await asyncio.to_thread(CliRunner().invoke, main, ["--config", cfg, "status", "--format", "json"],
                                  catch_exceptions=False)
    assert res.exit_code == 0, res.output
    import json

    doc = json.loads(res.output)
    c = next(x for x in doc["channels"] if x["channel"] == "@stat_news")
    assert c["push_missed"] == 1 and doc["push_missed"] == 1
    assert c["arrivals"] == {"push": 1, "poll": 2}  # the first poll's post, and the one push missed
    assert c["latency"]["alerts_24h"] == 2 and c["latency"]["p50_seconds"] > 0
    table = await asyncio.to_thread(CliRunner().invoke, main, ["--config", cfg, "status"], catch_exceptions=False)
    head, row = table.output.splitlines()[1:3]
    assert head.split()[8:11] == ["P50", "P95", "MISSED"]
    at = head.index("MISSED")
    assert row.split()[0] == "@stat_news" and row[at:].split()[0] == "1"


def test_imported_posts_record_their_arrival(write_config: Any, sqlite_url: str) -> None:
    from click.testing import CliRunner

    from monitor.cli import main
    from tests.service_helpers import q

    cfg = write_config('[[entities]]\nname = "Росатом"\n', sqlite_url)
    data = Path(__file__).parent / "data" / "export_single.json"
    r = CliRunner().invoke(main, ["--config", str(cfg), "import", str(data), "--no-progress"])
    assert r.exit_code == 0, r.output
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    assert q(db, "select arrival, count(*), count(seen_at) from posts group by arrival") == [("import", 9, 9)]


async def test_service_push_silent_polls_opens_an_incident_and_counts_the_miss(
        tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import generate_latest

    import monitor.service.push as service_push
    from tests.service_helpers import InProcService, q
    from tests.tme_server import alert_sink

    monkeypatch.setattr(service_push, "PROBE_FIRST", 0.3)
    monkeypatch.setattr(service_push, "PROBE_EVERY", 0.5)
    server = FakeTelegram()
    ch = server.add(5302, "svc_silent")
    ch.post("старый пост")
    db = tmp_path / "s.db"
    with alert_sink() as (sink, port):
        settings = make_settings(_service_config(db, port, ["svc_silent"], push=True))
        async with InProcService(settings, server) as svc:
            assert await svc.wait_cycles("telethon", 1, 60)
            pusher = svc.service.pusher
            r = pusher.receiver
            assert r is not None
            assert await wait_until(lambda: r.mode("@svc_silent") == PUSH, 20)
            r.silent_after, r.grace = 0.0, timedelta(0)  # (the defaults: 120 s without updates, 20 s late)
            server.push = False  # Telegram stops pushing: only the probe can tell
            ch.post("Росатом: пост без обновления", date=datetime.now(UTC))
            assert await wait_until(lambda: sink.count() == 1, 20)  # the probe found it, a poll fetched it
            assert r.mode("@svc_silent") == FALLBACK
            assert svc.service.poller.interval("@svc_silent") == 300
            assert q(db, "select kind, subject, closed_at is null from incidents") == [("push_silent", "telegram", 1)]
            assert await wait_until(lambda: r.stats.missed["@svc_silent"] == 1, 5)
            await pusher._export()
            text = generate_latest(svc.service.ctx.metrics.registry).decode()
            assert 'tgmonitor_push_missed_posts_total{channel="@svc_silent"} 1.0' in text
            assert 'tgmonitor_push_channels{mode="fallback"} 1.0' in text
            server.push = True  # push works again: the next update brings the channel back
            ch.post("Росатом: обновление снова пришло", date=datetime.now(UTC))
            assert await wait_until(lambda: sink.count() == 2, 20)
            assert await wait_until(lambda: r.mode("@svc_silent") == PUSH, 10)
            assert await wait_until(
                lambda: q(db, "select count(*) from incidents where closed_at is null") == [(0,)], 10)
        assert svc.task is not None and svc.task.result() == 0
    assert q(db, "select message_id, arrival, push_missed from posts where message_id > 1 order by message_id") == [
        (2, "poll", 1), (3, "push", 0)]
