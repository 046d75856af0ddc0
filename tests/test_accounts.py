"""Several Telegram accounts (issue 16) on the fake Telegram, each account its own fake sender and dialogs
(tests/fake_accounts.py): the configuration, the plan, 2,000 channels over 5 accounts, an account banned mid-run
(its channels move, nothing lost or doubled, one operator alert, back when it recovers), a private channel only
one account reads, limits (PEER_FLOOD, a long flood wait), the commands, and two processes × 2 accounts on one
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fake_accounts as fa
import pytest
from click.testing import CliRunner
from fake_telegram import FakeClock
from sqlalchemy import func, insert, select

from monitor import models as m
from monitor.accounts import registry
from monitor.accounts.assign import AccountSlot, ChannelNeed, assign
from monitor.config import ConfigError, Settings, account_settings, load_settings
from monitor.jobs.accounts import ACCOUNT_DOWN, RECHECK_DEAD, AccountPool
from monitor.runtime import Runtime, open_runtime
from tests.tme_server import wait_until

FACTORY = fa.factory_spec()


@pytest.fixture
def world() -> Iterator[fa.FakeWorld]:
    fa.WORLD = fa.FakeWorld()
    yield fa.WORLD
    fa.WORLD = None


def config(names: list[str], channels: str, *, rpm: int = 1_000_000, extra: str = "", db: str | None = None) -> str:
    accs = "".join(f'[[telegram.accounts]]\nname = "{n}"\n' for n in names)
    head = f'[database]\nurl = "{db}"\n\n' if db else ""
    return (f'{head}[telegram]\nclient_factory = "{FACTORY}"\n{extra}\n[schedule]\nrequests_per_minute = {rpm}\n'
            f'interval = 60\n\n{accs}\n[[entities]]\nname = "Росатом"\n\n[[alerts]]\nname = "sink"\n'
            f'url = "json://127.0.0.1:9/sink"\n\n[[alerts]]\nname = "ops"\nurl = "json://127.0.0.1:9/hook"\n'
            f'operator = true\n\n{channels}')


def by_name(names: list[str]) -> str:
    return "".join(f'[[channels]]\nusername = "{n}"\n' for n in names)


async def accounts_of(rt: Runtime) -> dict[str, str | None]:
    async with rt.store.sessions() as s:
        rows = (await s.execute(select(m.Channel.username, m.Channel.tg_id, m.Channel.account))).all()
    return {u or str(t): a for u, t, a in rows}


async def knowledge_of(rt: Runtime, tg_id: int) -> dict[str, bool | None]:
    """What each account knows of a channel: readable (True, False) — no row: never tried."""
    async with rt.store.sessions() as s:
        rows = (await s.execute(select(m.ChannelAccount.account, m.ChannelAccount.readable)
                                .join(m.Channel, m.Channel.id == m.ChannelAccount.channel_id)
                                .where(m.Channel.tg_id == tg_id))).all()
    return dict(rows)


async def post_counts(rt: Runtime) -> dict[str, int]:
    async with rt.store.sessions() as s:
        rows = (await s.execute(select(m.Channel.username, func.count(m.Post.id))
                                .join(m.Post, m.Post.channel_id == m.Channel.id).group_by(m.Channel.username))).all()
    return {u: int(n) for u, n in rows}


# --------------------------------------------------------------------------- configuration


def test_accounts_config_and_single_account_unchanged(make_settings: Callable[..., Settings],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    single = make_settings('[telegram]\nsession_file = "/tmp/one.session"\n')
    assert single.telegram.accounts == () and single.telegram.account is None
    monkeypatch.setenv("TG_SESSION_RESERVE", "1Aabc")
    s = make_settings('[telegram]\nproxy = "socks5://127.0.0.1:1080"\nfailover_flood_wait = 120\n'
                      '[[telegram.accounts]]\nname = "main"\n'
                      '[[telegram.accounts]]\nname = "Reserve"\nproxy = "http://127.0.0.1:3128"\n'
                      'requests_per_minute = 7\nsession_file = "/tmp/r.session"\n')
    main, reserve = s.telegram.accounts
    assert main.name == "main" and main.session_file == s.data_dir / "tgmonitor-main.session"
    assert main.session is None and main.requests_per_minute is None
    assert reserve.session == "1Aabc" and reserve.requests_per_minute == 7 and s.telegram.failover_flood_wait == 120
    tg = account_settings(s, "reserve").telegram
    assert (tg.account, tg.session, str(tg.session_file), tg.proxy) == (
        "Reserve", "1Aabc", "/tmp/r.session", "http://127.0.0.1:3128")
    assert account_settings(s, "main").telegram.proxy == "socks5://127.0.0.1:1080"  # [telegram] proxy by default
    with pytest.raises(ConfigError) as bad:
        make_settings('[[telegram.accounts]]\nname = "a"\nsesion_file = "x"\n[[telegram.accounts]]\nname = "A"\n'
                      '[[telegram.accounts]]\nname = "2x"\n[[telegram.accounts]]\nrequests_per_minute = 5\n'
                      '[[telegram.accounts]]\nname = "b"\nsession_file = "/tmp/s"\n'
                      '[[telegram.accounts]]\nname = "c"\nsession_file = "/tmp/s.session"\n'
                      '[[telegram.accounts]]\nname = "d"\nproxy = "ftp://x:1"\n')
    text = "\n".join(bad.value.problems)
    for part in ("telegram.accounts[0].sesion_file: unknown key; did you mean 'session_file'?",
                 "telegram.accounts[1].name: 'A' is used by another account",
                 "telegram.accounts[2].name: '2x' must start with a letter",
                 "telegram.accounts[3].name: every account needs a name",
                 "telegram.accounts[5].session_file: /tmp/s.session is also the session of account 'b'",
                 "telegram.accounts[6].proxy: must start with socks5://"):
        assert part in text, text


# --------------------------------------------------------------------------- the plan


def test_plan_prefers_joined_keeps_private_respects_budgets_and_is_stable() -> None:
    accs = [AccountSlot(n, 20) for n in ("a", "b", "c")]
    needs = [ChannelNeed(i, 300, joined=frozenset({"abc"[i % 3]})) for i in range(1, 301)]
    needs.append(ChannelNeed(1000, 300, joined=frozenset({"c"}), unreadable=frozenset({"a", "b"})))
    plan = assign(needs, accs)
    assert all(plan.by_channel[n.id] in n.joined for n in needs)  # every channel with an account that joined it
    assert plan.by_channel[1000] == "c" and not plan.over_budget
    assert assign(list(reversed(needs)), list(reversed(accs))).by_channel == plan.by_channel  # order-free
    # "c" taken out: the private channel has no reader left but is still given to someone (to be reported
    # unavailable), c's other channels spread; nobody else's channel moves
    without = assign(needs, accs[:2])
    moved = {cid for cid in plan.by_channel if plan.by_channel[cid] != without.by_channel[cid]}
    assert moved == {cid for cid, a in plan.by_channel.items() if a == "c"}
    # back: exactly what it had
    assert assign(needs, accs).by_channel == plan.by_channel
    # budgets: 20 rpm, 80 % planned = 16 rpm; a channel not joined polled every 60 s costs 1 rpm
    free = [ChannelNeed(i, 60) for i in range(1, 41)]
    p = assign(free, accs)
    assert sorted(p.counts().values()) == [13, 13, 14] or max(p.load.values()) <= 16
    assert not p.over_budget
    over = assign([ChannelNeed(i, 60) for i in range(1, 61)], accs)  # 60 rpm wanted, 48 planned: over
    assert over.over_budget and all(a is not None for a in over.by_channel.values())


def test_plan_never_gives_an_unreadable_channel_while_another_may_read_it() -> None:
    accs = [AccountSlot(n, 20) for n in ("a", "b")]
    need = ChannelNeed(7, 300, unreadable=frozenset({"a"}))
    assert assign([need], accs).by_channel == {7: "b"}
    assert assign([need], accs[:1]).by_channel == {7: "a"}  # nobody else: still tried (and reported)
    assert assign([need], []).by_channel == {7: None}


# --------------------------------------------------------------------------- the pool


async def seed_polled(rt: Runtime, world: fa.FakeWorld) -> None:
    """Store every world channel as polled before (cursor and baseline at its newest post): the steady state."""
    async with rt.store.sessions.begin() as s:
        await s.execute(insert(m.Channel), [
            {"username": ch.username, "tg_id": ch.id, "title": ch.title, "source": "telethon", "status": "active",
             "cursor": ch.top(), "baseline_id": ch.top(), "seen_count": ch.top(), "polls": 1,
             "config_ref": f"@{ch.username}", "backfill_done": True, "access_hash": None}
            for ch in world.channels.values()])


async def test_2000_channels_over_5_accounts_cost_a_few_requests_a_cycle(
        world: fa.FakeWorld, make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    names = [f"acc{i}" for i in range(5)]
    for n in names:
        world.account(n)
    chans = [world.add(5_000_000 + i, f"ch_{i:05d}", joined_by=[names[i % 5]]) for i in range(2000)]
    for ch in chans:
        ch.post("старый пост")
    s = make_settings(config(names, by_name([c.username or "" for c in chans]), rpm=20), sqlite_url)
    async with open_runtime(s) as rt:
        await seed_polled(rt, world)
        pool = AccountPool(rt)
        reps = await pool.poll(list(s.channels))
        assert not [r.error for r in reps if r.error]
        # every channel read by the account that joined it, and the plan is within every budget
        owner = await accounts_of(rt)
        assert all(owner[ch.username or ""] == names[i % 5] for i, ch in enumerate(chans))
        assert sum(1 for a in owner.values() if a == "acc3") == 400
        for a in world.accounts.values():
            a.counts.clear()
        for ch in chans[::200]:  # 10 active channels, 2 per account
            ch.post("Росатом сообщил")
        reps = await pool.poll(list(s.channels))
        per_account = world.requests()
        assert sum(r.new for r in reps) == 10
        # per account: 4 GetPeerDialogs (100 channels each) + 2 GetHistory; goal: at most 5 × 25 a cycle
        assert all(n <= 25 for n in per_account.values()), per_account
        assert sum(per_account.values()) == 5 * (4 + 2) <= 5 * 25
        assert all(a.counts["ResolveUsernameRequest"] == 0 for a in world.accounts.values())
        summary = {r["account"]: r for r in await registry.summary(rt.engine, names, 60)}
        assert summary["acc0"]["channels"] == 400 and summary["acc0"]["joined"] == 400
        assert summary["acc0"]["requests_1h"] >= 6 and summary["acc0"]["state"] == "active"
        await pool.aclose()


async def test_an_account_banned_mid_run_moves_its_channels_nothing_lost_or_doubled(
        world: fa.FakeWorld, make_settings: Callable[..., Settings], db_url: str) -> None:
    names = ["a", "b", "c"]
    for n in names:
        world.account(n)
    chans = [world.add(6_000_000 + i, f"bn_{i:03d}", joined_by=[names[i % 3]]) for i in range(30)]
    for ch in chans:
        ch.post("старый пост")
    clock = FakeClock()
    s = make_settings(config(names, by_name([c.username or "" for c in chans])), db_url)
    async with open_runtime(s) as rt:
        pool = AccountPool(rt, clock=clock)
        await pool.poll(list(s.channels))
        before = await accounts_of(rt)
        assert {a for a in before.values()} == set(names)
        b_channels = {k for k, a in before.items() if a == "b"}
        for ch in chans:
            ch.post("Росатом: новость")
        world.accounts["b"].banned = True  # banned between two cycles: its very first request fails
        reps = await pool.poll(list(s.channels))
        assert sum(r.new for r in reps) == 30 and not [r.error for r in reps if r.error]
        after = await accounts_of(rt)
        assert all(after[k] in ("a", "c") for k in b_channels)  # moved, in the same cycle
        assert all(after[k] == before[k] for k in before if k not in b_channels)  # nobody else moved
        assert pool.failovers and pool.failovers[0].account == "b" and pool.failovers[0].state == "banned"
        # nothing lost, nothing doubled: every post once, one alert per post mentioning the entity
        assert await post_counts(rt) == {ch.username: 2 for ch in chans}
        async with rt.store.sessions() as ss:
            alerts = (await ss.execute(select(m.Alert.kind, func.count()).group_by(m.Alert.kind))).all()
            inc = (await ss.execute(select(m.Incident).where(m.Incident.kind == ACCOUNT_DOWN))).scalars().all()
        assert dict(alerts) == {"match": 30, "operator": 1}
        assert len(inc) == 1 and inc[0].subject == "Telegram account b" and "banned" in (inc[0].detail or "")
        async with rt.store.sessions() as ss:
            titles = (await ss.execute(select(m.Alert.title).where(m.Alert.kind == "operator"))).scalars().all()
        assert titles == ["tgmonitor: аккаунт Telegram выведен из работы — b"]  # its own title, not the generic one
        # still banned at the next cycle: no second alert; more posts still arrive once
        for ch in chans[:6]:
            ch.post("ещё Росатом")
        await pool.poll(list(s.channels))
        async with rt.store.sessions() as ss:
            assert (await ss.execute(select(func.count()).select_from(m.Alert)
                                     .where(m.Alert.kind == "operator"))).scalar_one() == 1
        # the ban is lifted (a new login): tried again after RECHECK_DEAD, its channels come back
        world.accounts["b"].banned = False
        clock.advance(RECHECK_DEAD + 1)
        await pool.poll(list(s.channels))
        assert await accounts_of(rt) == before
        async with rt.store.sessions() as ss:
            inc = (await ss.execute(select(m.Incident).where(m.Incident.kind == ACCOUNT_DOWN))).scalars().all()
        assert inc[0].closed_at is not None
        counts = await post_counts(rt)
        assert sum(counts.values()) == 30 * 2 + 6
        await pool.aclose()


async def test_a_private_channel_one_account_reads_stays_with_it(
        world: fa.FakeWorld, make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    names = ["a", "b", "c"]
    for n in names:
        world.account(n)
    public = [world.add(7_000_000 + i, f"pub_{i:03d}", joined_by=[]) for i in range(9)]  # nobody joined
    secret = world.add(7_999_999, None, "Закрытый", private=True, joined_by=["b"])
    for ch in [*public, secret]:
        ch.post("Росатом: старое")
    clock = FakeClock()
    s = make_settings(config(names, by_name([c.username or "" for c in public]) + "[[channels]]\nid = 7999999\n"),
                      sqlite_url)
    async with open_runtime(s) as rt:
        pool = AccountPool(rt, clock=clock)
        reps = {r.channel: r for r in await pool.poll(list(s.channels))}
        assert reps["7999999"].error is None and reps["7999999"].new == 1
        assert (await accounts_of(rt))["7999999"] == "b"
        for _ in range(3):
            secret.post("ещё")
            await pool.poll(list(s.channels))
            assert (await accounts_of(rt))["7999999"] == "b"
        # "a" and "c" never tried it (nothing learned of it but b's membership): "b"'s dialogs said it is b's
        assert await knowledge_of(rt, 7999999) == {"b": True}
        # b is out: nobody else can read it; after trying, it is unavailable (not lost: b reads it when back)
        world.accounts["b"].revoked = True
        reps = {r.channel: r for r in await pool.poll(list(s.channels))}
        assert "unavailable" in (reps["7999999"].error or "")
        assert await knowledge_of(rt, 7999999) == {"a": False, "b": True, "c": False}
        world.accounts["b"].revoked = False
        secret.post("Росатом вернулся")
        clock.advance(RECHECK_DEAD + 1)  # b is tried again; back, it reads the channel at once (no 6 h wait)
        reps = {r.channel: r for r in await pool.poll(list(s.channels))}
        assert reps["7999999"].new == 1 and (await accounts_of(rt))["7999999"] == "b"
        row = await rt.store.find_channel(tg_id=7999999)
        assert row is not None and row.status == "active"
        await pool.aclose()


async def test_peer_flood_and_a_long_flood_wait_limit_an_account_until_later(
        world: fa.FakeWorld, make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    names = ["a", "b"]
    for n in names:
        world.account(n)
    chans = [world.add(8_000_000 + i, f"fl_{i:03d}", joined_by=[names[i % 2]]) for i in range(8)]
    for ch in chans:
        ch.post("пост")
    clock = FakeClock()
    s = make_settings(config(names, by_name([c.username or "" for c in chans]),
                             extra="failover_flood_wait = 600\n"), sqlite_url)
    async with open_runtime(s) as rt:
        pool = AccountPool(rt, clock=clock)
        await pool.poll(list(s.channels))
        world.accounts["a"].flood_on("GetPeerDialogsRequest", 3600)
        for ch in chans:
            ch.post("Росатом")
        reps = await pool.poll(list(s.channels))
        assert sum(r.new for r in reps) == 8
        st = pool.status["a"]
        assert st.state == "limited" and st.retry_at == clock.now() + timedelta(seconds=3600)
        assert set((await accounts_of(rt)).values()) == {"b"}
        async with rt.store.sessions() as ss:
            fw = (await ss.execute(select(m.FloodWait.account, m.FloodWait.seconds))).all()
        assert fw == [("a", 3600)]
        # a short flood wait is only a wait: the account stays
        world.accounts["b"].flood_on("GetHistoryRequest", 5)
        chans[1].post("x")
        reps = await pool.poll(list(s.channels))
        assert pool.status["b"].state == "active"
        assert any(r.deferred_until is not None for r in reps)
        # PEER_FLOOD: limited for an hour
        clock.advance(3601)
        await pool.poll(list(s.channels))
        assert pool.status["a"].state == "active"
        world.accounts["b"].peer_flood = True
        for ch in chans:
            ch.post("снова")
        clock.advance(10)
        reps = await pool.poll(list(s.channels))
        assert pool.status["b"].state == "limited" and "PEER_FLOOD" in (pool.status["b"].reason or "")
        assert set((await accounts_of(rt)).values()) == {"a"}
        assert sum(r.new for r in reps) >= 7  # the deferred one comes with a later cycle
        rows = {r["account"]: r for r in await registry.summary(rt.engine, names, 60)}
        assert rows["b"]["state"].startswith("limited") and rows["b"]["authorised"] is True
        await pool.aclose()


async def test_every_account_dead_stops_the_telethon_jobs(
        world: fa.FakeWorld, make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    from monitor.jobs.base import SessionDead

    for n in ("a", "b"):
        world.account(n).revoked = True
    world.add(9_000_001, "dead_one").post("x")
    s = make_settings(config(["a", "b"], by_name(["dead_one"])), sqlite_url)
    async with open_runtime(s) as rt:
        pool = AccountPool(rt)
        with pytest.raises(SessionDead, match="every Telegram account"):
            await pool.poll(list(s.channels))
        await pool.aclose()


# --------------------------------------------------------------------------- commands


def test_accounts_command_table_and_json(world: fa.FakeWorld, write_config: Callable[..., Path],
                                         sqlite_url: str) -> None:
    from monitor.cli import main

    for n in ("main", "reserve"):
        world.account(n)
    world.add(9_100_001, "cmd_one", joined_by=["reserve"]).post("x")
    cfg = write_config(config(["main", "reserve"], by_name(["cmd_one"])), sqlite_url)
    single = write_config("", sqlite_url, name="single.toml")
    s = load_settings(cfg)

    async def poll() -> None:
        async with open_runtime(s) as rt:
            pool = AccountPool(rt)
            await pool.poll(list(s.channels))
            await pool.aclose()

    asyncio.run(poll())
    r = CliRunner().invoke(main, ["--config", str(cfg), "accounts"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["ACCOUNT", "STATE", "AUTHORISED"]
    assert lines[2].split()[:5] == ["reserve", "active", "yes", "1", "1"]
    j = CliRunner().invoke(main, ["--config", str(cfg), "accounts", "--format", "json"])
    rows = {x["account"]: x for x in json.loads(j.output)}
    assert rows["reserve"]["channels"] == 1 and rows["main"]["channels"] == 0 and rows["main"]["joined"] == 0
    assert rows["reserve"]["requests_1h"] >= 2
    st = CliRunner().invoke(main, ["--config", str(cfg), "status"])
    assert "ACCOUNT" in st.output and "reserve" in st.output.splitlines()[2]
    one = CliRunner().invoke(main, ["--config", str(single), "accounts"])
    assert one.exit_code == 0 and "one Telegram account" in one.output
    one_json = CliRunner().invoke(main, ["--config", str(single), "accounts", "--format", "json"])
    assert one_json.exit_code == 0 and json.loads(one_json.output) == []  # still JSON for scripts


def test_login_names_the_account(world: fa.FakeWorld, write_config: Callable[..., Path], sqlite_url: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.cli import main

    world.account("main")
    world.account("reserve").authorized = False
    cfg = write_config(config(["main", "reserve"], ""), sqlite_url)
    monkeypatch.setattr("monitor.cli.login.interactive", lambda: True)
    r = CliRunner().invoke(main, ["--config", str(cfg), "login"])
    assert r.exit_code == 2 and "--account (main, reserve)" in r.output
    r = CliRunner().invoke(main, ["--config", str(cfg), "login", "--account", "nope"])
    assert r.exit_code == 2 and "no such account" in r.output
    r = CliRunner().invoke(main, ["--config", str(cfg), "login", "--account", "Reserve", "--print-session"],
                           input="+79991234567\n12345\n")
    assert r.exit_code == 0, r.output
    assert "TG_SESSION_RESERVE=" in r.output and world.accounts["reserve"].authorized


def test_join_uses_the_account_with_room_slowly_and_never_past_500(
        world: fa.FakeWorld, write_config: Callable[..., Path], sqlite_url: str) -> None:
    from monitor.cli import main
    from monitor.jobs.join import join_channels

    main_acc, reserve = world.account("main"), world.account("reserve")
    for i in range(3):
        world.add(9_200_000 + i, f"room_{i}", joined_by=["main"])
    for i in range(4):
        world.add(9_300_000 + i, f"want_{i}", joined_by=[])
    world.add(9_300_100, "both_have", joined_by=["reserve"])
    cfg = write_config(config(["main", "reserve"], by_name(["want_0"])), sqlite_url)
    s = load_settings(cfg)
    slept: list[float] = []

    async def sleep(x: float) -> None:
        slept.append(x)

    async def go(refs: list[str], **kw: Any) -> list[Any]:
        async with open_runtime(s) as rt:
            return await join_channels(rt, refs, sleep=sleep, **kw)

    res = asyncio.run(go(["@want_0", "t.me/want_1", "both_have", "123", "no_such_chan"], delay=120))
    got = {r.channel: (r.outcome, r.account) for r in res}
    assert got["@want_0"] == ("joined", "reserve") and got["@want_1"] == ("joined", "reserve")  # more room
    assert got["@both_have"] == ("already", "reserve")
    assert got["123"][0] == "failed" and got["@no_such_chan"][0] == "failed"
    assert reserve.channels[9_300_000].joined and not main_acc.channels[9_300_000].joined
    assert len(slept) == 2 and all(90 <= x <= 150 for x in slept)  # 120 s ± 25 % between joins
    # a configured channel (its row registered by the service) is known joined at once
    async def joined_rows() -> list[Any]:
        async with open_runtime(s) as rt, rt.store.sessions() as ss:
            return list((await ss.execute(select(m.ChannelAccount.account, m.ChannelAccount.joined))).all())

    async def register() -> None:
        async with open_runtime(s) as rt:
            await rt.store.upsert_channel(username="want_2", source="telethon")

    asyncio.run(register())
    res = asyncio.run(go(["want_2"], delay=0))
    # both in 3 channels now: the first configured joins
    assert res[0].outcome == "joined" and asyncio.run(joined_rows()) == [("main", True)]
    # the cap: an account in 500 channels joins nothing more
    for i in range(500 - 3):
        world.add(9_400_000 + i, f"fill_{i:04d}", joined_by=["main"])
    res = asyncio.run(go(["want_3"], account="main", delay=0))
    assert [r.outcome for r in res] == ["skipped"] and "cap is 500" in res[0].detail
    r = CliRunner().invoke(main, ["--config", str(cfg), "join", "want_3", "--account", "nobody"])
    assert r.exit_code == 2 and "no such account" in r.output
    r = CliRunner().invoke(main, ["--config", str(cfg), "join", "want_3", "--delay", "1"])
    assert r.exit_code == 0 and "faster than a careful person" in r.output and "want_3: joined (reserve)" in r.output


# --------------------------------------------------------------------------- two processes on one PostgreSQL


def process_config(tmp_path: Path, name: str, accounts: list[str], channels: str, pg_url: str) -> Settings:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "tgmonitor.toml"
    body = config(accounts, channels, db=pg_url).replace("interval = 60", "interval = 2\njitter = 0\nlease_seconds = 3")
    path.write_text(body.replace('[telegram]\n', '[telegram]\npush = false\n'), encoding="utf-8")
    return load_settings(path)


async def test_two_processes_with_two_accounts_each_share_one_postgresql(
        world: fa.FakeWorld, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.service_helpers import InProcService

    for var in ("TGMONITOR_DATABASE_URL", "TGMONITOR_DATA_DIR", "STATE_DIRECTORY", "TG_SESSION"):
        monkeypatch.delenv(var, raising=False)
    for n in ("a1", "a2", "b1", "b2"):
        world.account(n)
    owners = ["a1", "a2", "b1", "b2"]
    chans = [world.add(9_500_000 + i, f"two_{i:03d}", joined_by=[owners[i % 4]]) for i in range(40)]
    secret = world.add(9_599_999, None, "Только b2", private=True, joined_by=["b2"])
    for ch in [*chans, secret]:
        ch.post("старое")
    channels = by_name([c.username or "" for c in chans]) + "[[channels]]\nid = 9599999\n"
    p1 = process_config(tmp_path, "p1", ["a1", "a2"], channels, pg_url)
    p2 = process_config(tmp_path, "p2", ["b1", "b2"], channels, pg_url)
    async with InProcService(p1, None) as s1:
        assert await s1.wait_cycles("telethon", 1, 60)
        async with InProcService(p2, None) as s2:
            assert await s2.wait_cycles("telethon", 2, 60)
            rt = s1.service.ctx.rt
            assert rt is not None

            async def settled() -> dict[str, Any]:
                async with rt.store.sessions() as ss:
                    rows = (await ss.execute(select(m.Channel.username, m.Channel.tg_id, m.Channel.account,
                                                    m.Channel.lease_owner))).all()
                return {u or str(t): (a, o) for u, t, a, o in rows}

            async def placed() -> bool:
                state = await settled()
                return all(a is not None and a == owners[int(k[4:]) % 4] for k, (a, _o) in state.items()
                           if k.startswith("two_")) and state["9599999"][0] == "b2"

            # every channel ends with a process whose account has joined it (the private one: with b2's)
            assert await wait_until(placed, 30, step=0.5), await settled()
            state = await settled()
            assert state["9599999"][0] == "b2"
            wrong = {k: a for k, (a, _o) in state.items() if k.startswith("two_") and a != owners[int(k[4:]) % 4]}
            assert not wrong
            lease1, lease2 = s1.service.book.leases, s2.service.book.leases
            assert lease1 is not None and lease2 is not None
            assert not (lease1.held & lease2.held)  # no channel held twice

            async def stored() -> int:
                async with rt.store.sessions() as ss:
                    return int((await ss.execute(select(func.count()).select_from(m.Post))).scalar_one())

            async def stored_is(n: int) -> bool:
                return await stored() == n

            for ch in [*chans, secret]:
                ch.post("Росатом: новое")
            assert await wait_until(lambda: stored_is(2 * 41), 30, step=0.5), await stored()
        # process 2 stops cleanly: its channels move to process 1's accounts; the private one has no reader left
        for ch in chans:
            ch.post("после остановки")
        assert await wait_until(lambda: stored_is(2 * 41 + 40), 40, step=0.5), await stored()
        async with rt.store.sessions() as ss:
            dup = (await ss.execute(select(func.count()).select_from(m.Alert).where(m.Alert.kind == "match"))
                   ).scalar_one()
        assert dup == 41  # one alert per post mentioning the entity, none twice


async def test_account_leases_split_telethon_by_account_and_web_by_process(runtime: Runtime) -> None:
    from monitor.accounts.leases import AccountLeases

    rt = runtime
    tg = [(await rt.store.upsert_channel(username=f"lt_{i:02d}", source="telethon")).id for i in range(12)]
    web = [(await rt.store.upsert_channel(username=f"lw_{i:02d}", source="web")).id for i in range(12)]
    info = {cid: ("telethon", 300.0) for cid in tg} | {cid: ("web", 300.0) for cid in web}
    # p1's account "a" has joined the first six Telethon channels, p2's "b" the other six
    await registry.learn(rt.engine, "a", {cid: registry.Fact(joined=True) for cid in tg[:6]})
    await registry.learn(rt.engine, "b", {cid: registry.Fact(joined=True) for cid in tg[6:]})
    p1 = AccountLeases(rt.engine, "host1:p1", 30, rates=lambda: {"a": 20}, channels=lambda: info, pid=1)
    p2 = AccountLeases(rt.engine, "host2:p2", 30, rates=lambda: {"b": 20}, channels=lambda: info, pid=2)
    wanted = set(info)
    await p1.rebalance(wanted)
    await p2.rebalance(wanted)
    await p1.rebalance(wanted)  # p1 gives back what the plan now gives p2's account
    await p2.rebalance(wanted)
    assert set(tg[:6]) <= p1.held and set(tg[6:]) <= p2.held
    assert not (p1.held & p2.held) and (p1.held | p2.held) == wanted
    assert 2 <= len(p1.held & set(web)) <= 10  # web channels spread over the processes
    # b is banned: its channels go to a, whose process leases them
    await registry.set_state(rt.engine, "b", "banned", "banned by Telegram (USER_DEACTIVATED_BAN)")
    await p2.rebalance(wanted)
    await p1.rebalance(wanted)
    assert set(tg) <= p1.held and not (set(tg) & p2.held)
    # p2 stops cleanly: its web channels move at once
    await p2.release_all()
    await p1.rebalance(wanted)
    assert p1.held == wanted
