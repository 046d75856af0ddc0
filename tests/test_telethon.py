"""The Telethon source and jobs against the in-process fake Telegram (tests/fake_telegram.py): Telethon's own
code runs unmodified over a fake network sender; a faked clock, no real sleeping; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from fake_telegram import FakeClock, FakeTelegram, fake_client, no_sleep
from sqlalchemy import select
from telethon import TelegramClient, errors
from telethon.tl import functions, types

import monitor.jobs.telethon as tj
from monitor import models as m
from monitor.config import ChannelConfig, Settings
from monitor.jobs import SessionDead
from monitor.jobs.telethon import TelethonJobs, build_budget
from monitor.posts import message_link
from monitor.runtime import Runtime, open_runtime
from monitor.sources.telethon import TelegramUnreachable
from monitor.store import SavedPost

BODY = """
[schedule]
requests_per_minute = 100000
reread_every = 1000

[[entities]]
name = "Росатом"
"""


@dataclass
class RecordingPlanner:
    """The outbox seam (store.OutboxPlanner): records which saved posts would alert."""

    alerts: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)

    async def plan(self, session: Any, channel: m.Channel, saved: Sequence[SavedPost]) -> int:
        n = 0
        for sp in saved:
            if sp.alertable and sp.new_entity_ids:
                self.alerts.append((channel.id, sp.post.message_id, tuple(sp.new_entity_ids)))
                n += 1
        return n


@dataclass
class Env:
    rt: Runtime
    server: FakeTelegram
    clock: FakeClock
    planner: RecordingPlanner
    budget: Any
    client: TelegramClient | None = None

    def jobs(self, **kw: Any) -> TelethonJobs:
        self.client = fake_client(self.server)
        kw.setdefault("sleep", no_sleep)
        return TelethonJobs(self.rt, client=self.client, budget=self.budget, clock=self.clock, **kw)

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[Any]:
        j = self.jobs()
        try:
            return await j.poll(channels)
        finally:
            await j.aclose()

    async def rows(self) -> dict[str, m.Channel]:
        return {(c.config_ref or ""): c for c in await self.rt.store.channels()}

    async def posts(self, channel_id: int) -> list[m.Post]:
        async with self.rt.store.sessions() as s:
            return list((await s.execute(select(m.Post).where(m.Post.channel_id == channel_id)
                                         .order_by(m.Post.id))).scalars())


@pytest.fixture
async def env(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[Env]:
    settings = make_settings(BODY, db_url)
    async with open_runtime(settings) as rt:
        planner = RecordingPlanner()
        rt.ingestor.planner = planner
        clock = FakeClock()
        yield Env(rt, FakeTelegram(), clock, planner, build_budget(100000, clock=clock.monotonic))


def cfg(ref: str | int, **kw: Any) -> ChannelConfig:
    if isinstance(ref, int):
        return ChannelConfig(id=ref, **kw)
    return ChannelConfig(username=ref, **kw)


# --------------------------------------------------------------------------- the seam itself


async def test_telethon_sender_seam_has_not_moved() -> None:
    """If this fails, Telethon changed the private seam the fake relies on: update tests/fake_telegram.py."""
    server = FakeTelegram()
    client = fake_client(server)
    assert hasattr(client, "_sender") and hasattr(client, "_flood_waited_requests"), "Telethon's _sender seam moved"
    assert await client(functions.updates.GetStateRequest()) is not None
    assert server.calls == ["GetStateRequest"], "TelegramClient.__call__ no longer sends through client._sender"
    server.flood_on("GetStateRequest", 30)
    with pytest.raises(errors.FloodWaitError):
        await client(functions.updates.GetStateRequest())
    # Telethon 1.45 remembers flood waits per request type, but with receive_updates=False (our clients) it
    # files them under the InvokeWithoutUpdates wrapper and so never refuses the inner type: the process-wide
    # RequestBudget is what refuses. If this starts failing, Telethon fixed it (and then refuses by itself).
    assert await client(functions.updates.GetStateRequest()) is not None
    assert server.count("GetStateRequest") == 3
    assert list(client._flood_waited_requests) == [functions.InvokeWithoutUpdatesRequest.CONSTRUCTOR_ID]


async def test_fake_history_follows_the_offsets_document() -> None:
    server = FakeTelegram()
    ch = server.add(1001, "offsets_ch")
    for i in range(1, 251):
        ch.post(f"p{i}")
    for i in (7, 8, 120):
        ch.delete(i)
    client = fake_client(server)
    peer = types.InputPeerChannel(1001, ch.access_hash)

    async def ids(**kw: Any) -> list[int]:
        args = {"offset_id": 0, "add_offset": 0, "limit": 20, "max_id": 0, "min_id": 0, **kw}
        r = await client(functions.messages.GetHistoryRequest(peer=peer, offset_date=None, hash=0, **args))
        return [x.id for x in r.messages]

    assert await ids() == list(range(250, 230, -1))
    assert await ids(offset_id=100) == list(range(99, 79, -1))
    assert await ids(offset_id=100, add_offset=-20, limit=20) == list(range(119, 99, -1))  # newer than 99
    assert await ids(offset_id=100, add_offset=-10, limit=20) == list(range(109, 89, -1))
    assert await ids(offset_id=10, limit=20) == [9, 6, 5, 4, 3, 2, 1]
    assert await ids(offset_id=130, min_id=115, limit=20) == [129, 128, 127, 126, 125, 124, 123, 122, 121, 119,
                                                              118, 117, 116]
    assert await ids(max_id=245, limit=10) == [244, 243, 242, 241]
    # Telethon's iter_messages with min_id and reverse, over it: oldest first, deleted ids absent
    got = [x.id async for x in client.iter_messages(peer, min_id=3, reverse=True, wait_time=0)]
    assert got == [i for i in range(4, 251) if i not in (7, 8, 120)]


# --------------------------------------------------------------------------- polling


async def test_thousand_posts_across_three_channels_stored_once_in_order_with_links(env: Env) -> None:
    a = env.server.add(1000001, "alpha_news", joined=True)
    b = env.server.add(2000002, "beta_news", joined=False)
    c = env.server.add(3000003, None, "Private feed", joined=True)
    for ch in (a, b, c):
        for i in range(5):
            ch.post(f"старое {i}: Росатом")  # history: must never alert
    channels = [cfg("alpha_news"), cfg("beta_news"), cfg(3000003)]
    reports = await env.poll(channels)
    assert [r.error for r in reports] == [None, None, None]
    assert env.planner.alerts == []
    resolves = env.server.count("ResolveUsernameRequest")
    assert resolves == 2

    expected: dict[int, list[int]] = {a.id: [], b.id: [], c.id: []}
    mentions: set[tuple[int, int]] = set()
    n = 0
    while n < 1000:
        for ch, share in ((a, 5), (b, 3), (c, 2)):
            for _ in range(share):
                if n >= 1000:
                    break
                if n % 97 == 0:
                    ch.service()
                if n % 50 == 10:
                    ids = ch.album(f"альбом {n} о Росатоме", 3)
                    expected[ch.id].append(ids[0])
                    mentions.add((ch.id, ids[0]))
                    n += 3
                    continue
                mid = ch.post(f"пост {n}" + (" про Росатом" if n % 9 == 0 else ""))
                if n % 41 == 0:
                    ch.delete(mid)
                else:
                    expected[ch.id].append(mid)
                    if n % 9 == 0:
                        mentions.add((ch.id, mid))
                n += 1
    reports = await env.poll(channels)
    assert all(r.error is None for r in reports), reports
    rows = {r.tg_id: r for r in await env.rt.store.channels()}
    for ch in (a, b, c):
        row = rows[ch.id]
        posts = await env.posts(row.id)
        new = [p for p in posts if p.message_id > row.baseline_id]
        assert [p.message_id for p in new] == expected[ch.id]  # once each, in order of arrival
        assert len({p.message_id for p in posts}) == len(posts)
        assert row.cursor == ch.top()
        for p in new[:3]:
            link = message_link(row.username, row.tg_id, p.message_id)
            want = (f"https://t.me/{ch.username}/{p.message_id}" if ch.username
                    else f"https://t.me/c/{ch.id}/{p.message_id}")
            assert link == want
    by_tg = {r.id: r.tg_id for r in rows.values()}
    alerted = [(by_tg[cid], mid) for cid, mid, _ in env.planner.alerts]
    assert sorted(alerted) == sorted(mentions)  # every new mention once, no history
    assert sum(r.new for r in reports) == sum(len(v) for v in expected.values())
    assert env.server.count("ResolveUsernameRequest") == resolves  # never resolved again

    # a quiet cycle: one GetPeerDialogs for the joined ones, one GetHistory for the channel not joined
    env.server.calls.clear()
    reports = await env.poll(channels)
    assert sorted(env.server.calls) == ["GetHistoryRequest", "GetPeerDialogsRequest", "GetStateRequest"]
    assert all(r.new == 0 and r.error is None for r in reports)


async def test_albums_service_messages_forwards_and_the_baseline(env: Env) -> None:
    src = env.server.add(5550001, "upstream_src", "Upstream")
    src.post("оригинал")
    ch = env.server.add(5550002, "album_chan")
    ch.post("история про Росатом")
    ch.service()
    c = cfg("album_chan")
    await env.poll([c])
    row = (await env.rows())["@album_chan"]
    assert row.baseline_id == 2 and row.cursor == 2

    recent = env.clock.now()
    ids = [ch.post("подпись: Росатом", date=recent, grouped_id=77), ch.post("", date=recent, grouped_id=77)]
    r1 = (await env.poll([c]))[0]
    assert r1.new == 0  # a fresh album may still be arriving: left for the next poll
    ids.append(ch.post("", date=recent, grouped_id=77))
    ch.service(date=recent)
    fwd = ch.post("репост", fwd=(src.id, 1), date=recent)
    env.clock.advance(120)
    r2 = (await env.poll([c]))[0]
    assert r2.error is None and r2.new == 2
    posts = {p.message_id: p for p in await env.posts(row.id)}
    album = posts[ids[0]]
    assert album.member_ids == ids and album.text == "подпись: Росатом" and album.album_id == 77
    assert ids[1] not in posts and ids[2] not in posts
    assert posts[fwd].fwd_channel_id == src.id and posts[fwd].fwd_message_id == 1
    assert posts[fwd].fwd_name == "Upstream"
    assert (await env.rows())["@album_chan"].cursor == ch.top()  # the service message moved the cursor
    assert [a[1] for a in env.planner.alerts] == [ids[0]]  # above the baseline only


async def test_album_cut_by_a_poll_is_completed_not_split(env: Env) -> None:
    ch = env.server.add(5550003, "cut_album")
    ch.post("раз")
    c = cfg("cut_album")
    await env.poll([c])
    ids = ch.album("альбом", 2, grouped_id=99)  # old enough: no hold-back, stored as it is
    await env.poll([c])
    ids.append(ch.post("вторая подпись Росатом", grouped_id=99))
    await env.poll([c])
    row = (await env.rows())["@cut_album"]
    posts = [p for p in await env.posts(row.id) if p.album_id == 99]
    assert len(posts) == 1
    assert posts[0].message_id == ids[0] and posts[0].member_ids == ids
    assert posts[0].text == "альбом\n\nвторая подпись Росатом"


async def test_alert_history_channel_alerts_on_its_first_poll(env: Env) -> None:
    ch = env.server.add(5550004, "hist_chan")
    ch.post("Росатом в истории")
    await env.poll([cfg("hist_chan", alert_history=True)])
    assert len(env.planner.alerts) == 1


async def test_flood_wait_mid_poll_defers_gethistory_for_every_channel_and_loses_nothing(env: Env) -> None:
    chans = [env.server.add(6000000 + i, f"flood_ch{i}", joined=False) for i in range(3)]
    quiet = env.server.add(6000009, "quiet_joined", joined=True)
    for ch in (*chans, quiet):
        ch.post("старый")
    configs = [cfg(ch.username) for ch in (*chans, quiet)]
    await env.poll(configs)
    for ch in chans:
        for i in range(150):
            ch.post(f"новый {i} Росатом")
    env.server.flood_on("GetHistoryRequest", 30, nth=3)  # the 2nd channel's first page after the 1st's two
    before = env.server.count("GetHistoryRequest")
    j = env.jobs()
    reports = await j.poll(configs)  # run --once semantics: never sleeps (no_sleep would fail the test)
    assert reports[0].new == 150 and reports[0].deferred_until is None
    for r in reports[1:3]:
        assert r.new == 0 and r.deferred_until is not None
        assert timedelta(seconds=30) <= r.deferred_until - env.clock.now() <= timedelta(seconds=33)
    assert reports[3].error is None and reports[3].deferred_until is None  # other work went on
    assert env.server.count("GetHistoryRequest") - before == 3  # the 3rd channel was not even asked
    assert env.server.count("GetPeerDialogsRequest") == 1
    # any other job of this process (one shared budget) refuses GetHistory until then, without a request
    n = env.server.count("GetHistoryRequest")
    other = env.jobs(backfill_max_wait=0)
    r = await other.backfill(configs[1], progress=None)
    await other.aclose()
    assert r.deferred_until is not None and env.server.count("GetHistoryRequest") == n
    await j.aclose()
    async with env.rt.store.sessions() as s:
        fw = (await s.execute(select(m.FloodWait))).scalars().all()
    assert [(f.request_type, f.seconds) for f in fw] == [("GetHistoryRequest", 30)]
    # before the time: still deferred, no request
    reports = await env.poll(configs)
    assert env.server.count("GetHistoryRequest") == n and reports[1].deferred_until is not None
    env.clock.advance(34)
    reports = await env.poll(configs)
    assert [r.new for r in reports] == [0, 150, 150, 0]
    rows = {r.tg_id: r for r in await env.rt.store.channels()}
    for ch in chans:
        posts = await env.posts(rows[ch.id].id)
        assert [p.message_id for p in posts] == list(range(1, 152))


async def test_private_and_missing_channels_are_reported_and_the_rest_go_on(env: Env) -> None:
    good = env.server.add(7000001, "good_chan")
    good.post("Росатом")
    env.server.add(7000002, "secret_chan", private=True).post("x")
    configs = [cfg("secret_chan"), cfg("nobody_here"), cfg("good_chan")]
    reports = await env.poll(configs)
    assert reports[0].unavailable and "private" in (reports[0].error or "")
    assert reports[1].unavailable and "no channel has this username" in (reports[1].error or "")
    assert reports[2].error is None and reports[2].new == 1
    rows = await env.rows()
    assert rows["@secret_chan"].status == "unavailable" and rows["@nobody_here"].status == "unavailable"
    # reported once: the next cycles skip them without a request until the rare retry
    env.server.calls.clear()
    reports = await env.poll(configs)
    assert reports[0].error is None and reports[0].unavailable and reports[1].unavailable
    assert "ResolveUsernameRequest" not in env.server.calls and env.server.calls.count("GetHistoryRequest") == 0
    async with env.rt.store.sessions() as s:
        inc = (await s.execute(select(m.Incident).where(m.Incident.kind == "channel_unavailable"))).scalars().all()
    assert sorted(i.subject for i in inc) == ["@nobody_here", "@secret_chan"]
    env.clock.advance(7 * 3600)
    env.server.channels[7000002].private = False
    reports = await env.poll(configs)
    assert reports[0].error is None and not reports[0].unavailable and reports[0].new == 1
    assert reports[1].unavailable


async def test_revoked_session_stops_with_the_login_message(env: Env) -> None:
    env.server.add(7100001, "some_chan").post("x")
    env.server.revoked = True
    with pytest.raises(SessionDead, match="tgmonitor login"):
        await env.poll([cfg("some_chan")])
    # revoked while polling: the same
    env.server.revoked = False
    await env.poll([cfg("some_chan")])
    env.server.channels[7100001].post("y")
    j = env.jobs()
    await j._open()
    env.server.revoked = True
    with pytest.raises(SessionDead, match="tgmonitor login"):
        await j.poll([cfg("some_chan")])


@pytest.mark.parametrize("failure", ["IncompleteReadError", "ConnectionError"])
async def test_unreachable_telegram_is_an_operational_error_and_the_next_poll_reconnects(env: Env,
                                                                                         failure: str) -> None:
    ch = env.server.add(7150001, "net_chan")
    ch.post("a")
    await env.poll([cfg("net_chan")])  # baseline
    ch.post("b")
    env.server.unreachable = failure
    # at connect (a fresh jobs object) and mid-poll (an open one): never an EOFError, never a per-channel error
    with pytest.raises(TelegramUnreachable, match=r"cannot reach Telegram: .*set \[telegram\] proxy") as ei:
        await env.poll([cfg("net_chan")])
    assert not isinstance(ei.value, EOFError | OSError) and failure in ei.value.reason
    env.server.unreachable = None
    j = env.jobs()
    await j._open()
    env.server.unreachable = failure
    with pytest.raises(TelegramUnreachable):
        await j.poll([cfg("net_chan")])
    assert not j._opened  # the broken connection is dropped: the next poll connects afresh
    env.server.unreachable = None
    reports = await j.poll([cfg("net_chan")])
    await j.aclose()
    assert reports[0].error is None and reports[0].new == 1
    row = (await env.rows())["@net_chan"]
    assert [p.text for p in await env.posts(row.id)] == ["a", "b"]


def test_telegram_retry_backoff_is_exponential_jittered_capped_and_counts_one_failure_per_attempt() -> None:
    from monitor.service.telegram import RetryBackoff

    t = [0.0]
    b = RetryBackoff(30, 600, jitter=0.25, clock=lambda: t[0], rand=lambda: 0.0)
    assert not b.down and b.waiting() == 0
    waits = []
    for _ in range(8):
        w = b.failed("cannot reach Telegram: IncompleteReadError")
        assert w is not None
        assert b.failed("the same attempt, another channel of its batch") is None
        assert b.waiting() == pytest.approx(w)
        waits.append(w)
        t[0] += w  # the scheduler retries when the wait is over
    assert waits == [30, 60, 120, 240, 480, 600, 600, 600]
    assert b.down_for() == pytest.approx(sum(waits))
    assert b.recovered() == pytest.approx(sum(waits)) and not b.down and b.waiting() == 0
    assert b.recovered() is None
    assert b.failed("down again") == 30  # a new outage starts from the first step
    jittered = RetryBackoff(30, 600, jitter=0.25, clock=lambda: 0.0, rand=lambda: 1.0)
    assert jittered.failed("x") == pytest.approx(22.5)  # the jitter only ever shortens the wait


async def test_renamed_channel_keeps_its_row_and_is_never_resolved_again(env: Env) -> None:
    ch = env.server.add(7200001, "old_name")
    ch.post("a")
    c = cfg("old_name")
    await env.poll([c])
    ch.username = "new_name"
    ch.post("b")
    await env.poll([c])
    rows = await env.rows()
    row = rows["@old_name"]
    assert row.username == "new_name" and row.tg_id == ch.id
    assert env.server.count("ResolveUsernameRequest") == 1
    assert len(await env.posts(row.id)) == 2


async def test_channel_configured_by_id_is_found_without_a_username(env: Env) -> None:
    env.server.add(7300001, None, "No name").post("Росатом")
    reports = await env.poll([cfg(7300001)])
    assert reports[0].error is None and reports[0].new == 1
    row = (await env.rows())["7300001"]
    assert row.username is None and row.title == "No name" and row.access_hash == 7300001 * 7 + 3


async def test_reread_stores_edits_as_versions_and_marks_deletions(env: Env) -> None:
    reread_every_poll(env)
    ch = env.server.add(7400001, "edit_chan")
    ch.post("начало")
    c = cfg("edit_chan")
    await env.poll([c])
    now = env.clock.now()
    a = ch.post("про Газпром", date=now)
    b = ch.post("удалят", date=now)
    await env.poll([c])
    ch.edit(a, "про Газпром и Росатом", now + timedelta(minutes=5))
    ch.delete(b)
    reports = await env.poll([c])
    assert reports[0].edited == 1
    row = (await env.rows())["@edit_chan"]
    posts = {p.message_id: p for p in await env.posts(row.id)}
    assert posts[a].version == 2 and posts[a].text == "про Газпром и Росатом"
    assert posts[b].deleted
    async with env.rt.store.sessions() as s:
        old = (await s.execute(select(m.PostVersion.text))).scalars().all()
    assert old == ["про Газпром"]
    assert [x[1] for x in env.planner.alerts] == [a]  # only the entity the edit added
    assert env.server.count("GetMessagesRequest") >= 1


async def test_count_check_reports_a_gap(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    reread_every_poll(env, monkeypatch)
    ch = env.server.add(7500001, "gap_chan")
    for i in range(10):
        ch.post(f"p{i}", date=env.clock.now())
    c = cfg("gap_chan")
    await env.poll([c])  # the whole history fits one page: backfill is complete
    hidden = ch.post("never shown", date=env.clock.now())
    ch.hidden.add(hidden)
    ch.post("shown", date=env.clock.now())
    await env.poll([c])
    async with env.rt.store.sessions() as s:
        q = select(m.Incident).where(m.Incident.kind.in_(["count_gap", "poll_gap"]))
        inc = (await s.execute(q)).scalars().all()
    assert inc, "a message the server counts but never returned must be reported"
    assert env.server.count("GetHistoryRequest") >= 3  # the poll pages and the server-count request


async def test_count_check_runs_on_every_tenth_reread_only(env: Env) -> None:
    reread_every_poll(env)
    ch = env.server.add(7500002, "count_chan")
    for i in range(10):
        ch.post(f"p{i}", date=env.clock.now())
    c = cfg("count_chan")
    await env.poll([c])
    before = env.server.count("GetHistoryRequest")
    for _ in range(tj.COUNT_CHECK_EVERY):
        await env.poll([c])
    # quiet polls fetch no history; exactly one of the ten re-read polls also asked for the server count
    assert env.server.count("GetHistoryRequest") - before == 1


# --------------------------------------------------------------------------- backfill


async def test_backfill_resumes_where_it_stopped_with_limit_since_and_progress(env: Env) -> None:
    ch = env.server.add(7600001, "deep_chan")
    for i in range(1, 451):
        if i % 100 == 0:
            ch.album(f"альбом {i}", 4)  # some albums straddle page boundaries
        else:
            ch.post(f"пост {i} Росатом" if i % 10 == 0 else f"пост {i}")
    c = cfg("deep_chan")
    seen: list[tuple[int, int | None]] = []
    j = env.jobs()
    r1 = await j.backfill(c, limit=120, progress=lambda n, t: seen.append((n, t)))
    await j.aclose()
    assert r1.new == 120 and r1.error is None and seen[-1][0] == 120
    row = (await env.rows())["@deep_chan"]
    low = row.backfill_low
    assert low is not None and not row.backfill_done
    returned = env.server.history_returned
    j = env.jobs()
    r2 = await j.backfill(c)
    await j.aclose()
    row = (await env.rows())["@deep_chan"]
    assert row.backfill_done
    posts = await env.posts(row.id)
    mids = sorted(p.message_id for p in posts)
    assert len(mids) == len(set(mids)) == 450
    albums = [p for p in posts if p.album_id]
    assert len(albums) == 4 and all(len(p.member_ids) == 4 for p in albums)
    covered = sorted(i for p in posts for i in (p.member_ids or [p.message_id]))
    assert covered == list(range(1, ch.top() + 1))
    assert env.server.history_returned - returned < ch.top() - 120 + 100 + 1  # the first part not fetched again
    assert env.planner.alerts == [] and r2.error is None
    # done: running it again asks nothing
    n = env.server.count("GetHistoryRequest")
    j = env.jobs()
    await j.backfill(c)
    await j.aclose()
    assert env.server.count("GetHistoryRequest") == n


async def test_backfill_since_and_alert(env: Env) -> None:
    ch = env.server.add(7700001, "since_chan")
    for i in range(1, 51):
        ch.post(f"пост {i} Росатом")
    j = env.jobs()
    since = ch.messages[41].date
    r = await j.backfill(cfg("since_chan"), since=since, alert=True)
    await j.aclose()
    assert r.new == 10 and len(env.planner.alerts) == 10


async def test_backfill_waits_out_a_short_flood_wait_and_stops_at_a_long_one(env: Env) -> None:
    ch = env.server.add(7800001, "slow_chan")
    for i in range(1, 351):
        ch.post(f"пост {i}")
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        env.clock.advance(s)
        for k in list(j.src.client._flood_waited_requests):  # Telethon's own memory follows the clock
            j.src.client._flood_waited_requests[k] -= s

    env.server.flood_on("GetHistoryRequest", 20, nth=2)
    j = env.jobs(sleep=fake_sleep)
    r = await j.backfill(cfg("slow_chan"))
    assert r.new == 350 and r.error is None and slept and slept[0] >= 20
    await j.aclose()
    ch2 = env.server.add(7800002, "slower_chan")
    for i in range(1, 251):
        ch2.post(f"пост {i}")
    env.server.flood_on("GetHistoryRequest", 3600, nth=2)
    j = env.jobs(sleep=fake_sleep)
    r = await j.backfill(cfg("slower_chan"))
    await j.aclose()
    assert r.new == 100 and r.deferred_until is not None and "run the same command again" in (r.error or "")
    row = (await env.rows())["@slower_chan"]
    assert row.backfill_low == 151


def reread_every_poll(env: Env, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    env.rt.settings = replace(env.rt.settings, schedule=replace(env.rt.settings.schedule, reread_every=1))
    if monkeypatch is not None:  # the server-count comparison too, on every re-read
        monkeypatch.setattr(tj, "COUNT_CHECK_EVERY", 1)
