"""Channel leases: the rules on both databases, then two real ``tgmonitor run`` processes on PostgreSQL."""

from __future__ import annotations

import collections
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from monitor import models as m
from monitor.db import database_now
from monitor.leases import Leases, live_nodes, owner_name
from monitor.models import now
from tests.service_helpers import MENTION, PLAIN, Proc, polled_again
from tests.tme_server import Sink, wait_for


async def _channels(rt: object, n: int) -> list[int]:
    return [(await rt.store.upsert_channel(username=f"lease_ch{i:02d}", source="web")).id  # type: ignore[attr-defined]
            for i in range(n)]


async def test_two_owners_share_and_take_over(runtime: object) -> None:
    engine = runtime.engine  # type: ignore[attr-defined]
    ids = await _channels(runtime, 10)
    a = Leases(engine, owner_name(Path("/a/lock"), "host"), 30, pid=1)
    b = Leases(engine, owner_name(Path("/b/lock"), "host"), 30, pid=2)
    assert a.owner != b.owner

    first = await a.rebalance(ids)
    assert first.held == set(ids) and first.gained == set(ids)  # alone: every channel
    joined = await b.rebalance(ids)
    assert joined.held == set() and joined.live_nodes == 2  # all taken; a gives back its excess next round
    shrunk = await a.rebalance(ids, busy={ids[-1]})
    assert len(shrunk.held) == 5 and ids[-1] in shrunk.held  # a channel being polled is never given away
    grown = await b.rebalance(ids)
    assert len(grown.held) == 5 and grown.held.isdisjoint(shrunk.held)
    assert grown.held | shrunk.held == set(ids)

    # a poll renews only its own lease
    mine, theirs = next(iter(a.held)), next(iter(b.held))
    assert await a.hold(mine)
    assert not await a.hold(theirs)
    # b dies: its heartbeat and leases go stale; a takes every channel over
    async with a.sessions.begin() as s:
        past = now() - timedelta(seconds=31)
        await s.execute(update(m.Channel).where(m.Channel.lease_owner == b.owner).values(lease_until=past))
        await s.execute(update(m.ServiceNode).where(m.ServiceNode.owner == b.owner).values(seen_at=past))
    taken = await a.rebalance(ids)
    assert taken.held == set(ids) and taken.gained == grown.held and taken.live_nodes == 1
    assert not await b.hold(theirs)

    # a clean stop gives everything back at once
    await a.release_all()
    assert await live_nodes(engine, 30) == []
    back = await b.rebalance(ids)
    assert back.held == set(ids)


async def test_unconfigured_channels_are_released(runtime: object) -> None:
    engine = runtime.engine  # type: ignore[attr-defined]
    ids = await _channels(runtime, 4)
    a = Leases(engine, "host:a", 30)
    assert (await a.rebalance(ids)).held == set(ids)
    change = await a.rebalance(ids[:2])
    assert change.held == set(ids[:2]) and change.lost == set(ids[2:])


async def test_leases_follow_the_database_clock_not_the_hosts(runtime: object,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    engine = runtime.engine  # type: ignore[attr-defined]
    ids = await _channels(runtime, 6)
    a = Leases(engine, owner_name(Path("/a/lock"), "host-a"), 30, pid=1)
    assert (await a.rebalance(ids)).held == set(ids)
    async with a.sessions() as s:
        db_time = await database_now(s)
        until = (await s.execute(select(func.min(m.Channel.lease_until)))).scalar_one()
    assert timedelta(seconds=25) < until - db_time <= timedelta(seconds=30)

    # Process b runs on a host whose clock is 10 minutes ahead: by its own clock every lease of a (and a's
    # heartbeat) is long stale. Leases must not trust it: b sees a alive and takes nothing a holds fresh.
    ahead = lambda: datetime.now(UTC) + timedelta(minutes=10)  # noqa: E731
    monkeypatch.setattr(m, "now", ahead)
    monkeypatch.setattr("monitor.leases.now", ahead, raising=False)
    b = Leases(engine, owner_name(Path("/b/lock"), "host-b"), 30, pid=2)
    joined = await b.rebalance(ids)
    assert joined.live_nodes == 2 and joined.held == set()
    assert len(await live_nodes(engine, 30)) == 2
    assert await a.hold(ids[0])
    renewed, busy = await a.hold_many(ids)
    assert renewed == set(ids) and busy == set()
    assert await b.hold_many(ids) == (set(), set())


# --------------------------------------------------------------------------- two real processes


def _config(folder: Path, pg_url: str, port: int, prefix: str, sink_port: int, n: int) -> Path:
    folder.mkdir()
    chans = "".join(f'\n[[channels]]\nusername = "lease_ch{i:02d}"\nsource = "web"\n' for i in range(n))
    cfg = folder / "tgmonitor.toml"
    cfg.write_text(
        f'[database]\nurl = "{pg_url}"\n\n[schedule]\ninterval = 2\njitter = 0\nlease_seconds = 4\n\n'
        f'[sources.web]\nbase_url = "http://127.0.0.1:{port}/{prefix}"\nrequests_per_minute = 60000\n\n'
        f'[delivery]\nrate_limit_per_minute = 10000\n\n'  # 50 alerts at once must not become digests here
        f'[[entities]]\nname = "Росатом"\n\n[[alerts]]\nname = "sink"\nurl = "json://127.0.0.1:{sink_port}/hook"\n'
        f'{chans}', encoding="utf-8")
    return cfg


def _owners(pg_url: str) -> dict[str, str | None]:
    import asyncio

    import asyncpg

    async def go() -> dict[str, str | None]:
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("select username, lease_owner from channels where lease_until > now()")
            all_rows = await conn.fetch("select username from channels")
        except asyncpg.UndefinedTableError:  # the services have not migrated the database yet
            return {}
        finally:
            await conn.close()
        held = {r["username"]: r["lease_owner"] for r in rows}
        return {r["username"]: held.get(r["username"]) for r in all_rows}

    return asyncio.run(go())


def _alerts(pg_url: str) -> tuple[int, int]:
    """(outbox rows, rows sent) in the services' PostgreSQL database."""
    import asyncio

    import asyncpg

    async def go() -> tuple[int, int]:
        conn = await asyncpg.connect(pg_url)
        try:
            row = await conn.fetchrow("select count(*), count(*) filter (where status = 'sent') from alerts")
        except asyncpg.UndefinedTableError:
            return (0, 0)
        finally:
            await conn.close()
        return int(row[0]), int(row[1])

    return asyncio.run(go())


def _per_channel(sink: Sink) -> collections.Counter[str]:
    return collections.Counter(m.group(1) for t in sink.texts() for m in [re.search(r"@\u2060?(lease_ch\d\d)", t)] if m)


def test_two_processes_share_fifty_channels_and_take_over(tmp_path: Path, pg_url: str, servers) -> None:
    pv, port, sink, sport = servers
    n = 50
    for i in range(n):
        pv.add(f"lease_ch{i:02d}", PLAIN.format(n=i))
    a = Proc(_config(tmp_path / "a", pg_url, port, "a", sport, n), tmp_path / "a.log")
    b = Proc(_config(tmp_path / "b", pg_url, port, "b", sport, n), tmp_path / "b.log")
    try:
        # both hold leases, every channel is held, and the split is stable
        def balanced() -> bool:
            o = _owners(pg_url)
            return len(o) == n and None not in o.values() and len(set(o.values())) == 2
        assert wait_for(balanced, 40), a.text()[-3000:] + b.text()[-3000:]
        split = _owners(pg_url)
        counts = collections.Counter(split.values())
        assert all(c >= 15 for c in counts.values()), counts

        # once the split is stable (unchanged across a lease renewal round): every channel polled a few times,
        # each by one process only
        last: dict[str, str | None] = {}

        def stable() -> bool:
            nonlocal last
            cur = _owners(pg_url)
            same = cur == last and len(cur) == n and None not in cur.values()
            last = cur
            return same
        assert wait_for(stable, 20, step=1.5), a.text()[-3000:] + b.text()[-3000:]
        t0 = time.time()

        def seen_since() -> dict[str, list[str]]:
            seen: dict[str, list[str]] = collections.defaultdict(list)
            for prefix, ch in pv.polls(since=t0):
                seen[ch].append(prefix)
            return seen
        assert wait_for(lambda: len(seen_since()) == n and min(map(len, seen_since().values())) >= 3, 30)
        seen = seen_since()
        assert all(len(set(v)) == 1 for v in seen.values()), {k: v for k, v in seen.items() if len(set(v)) > 1}

        for i in range(n):
            pv.add(f"lease_ch{i:02d}", MENTION.format(n=i))
        assert wait_for(lambda: _alerts(pg_url) == (n, n), 40), a.text()[-2000:]
        assert polled_again(pv), a.text()[-2000:]  # more polls: no new outbox row, every row sent
        assert _alerts(pg_url) == (n, n)
        per = _per_channel(sink)
        assert sink.count() == n and set(per.values()) == {1}, per

        # kill one: the other takes all its channels within the lease timeout (4 s) plus a renewal round
        victim, survivor = a, b
        victim.p.send_signal(signal.SIGKILL)
        victim.p.wait()
        killed_at = time.monotonic()
        assert wait_for(lambda: len(set(_owners(pg_url).values())) == 1 and None not in _owners(pg_url).values(),
                        15), survivor.text()[-3000:]
        took = time.monotonic() - killed_at
        assert took < 4 + 4 / 3 + 3  # the lease timeout, a renewal round, slack for a loaded machine
        for i in range(n):
            pv.add(f"lease_ch{i:02d}", MENTION.format(n=100 + i))
        assert wait_for(lambda: _alerts(pg_url) == (2 * n, 2 * n), 40), survivor.text()[-2000:]
        assert polled_again(pv), survivor.text()[-2000:]
        assert _alerts(pg_url) == (2 * n, 2 * n)
        per = _per_channel(sink)
        assert sink.count() == 2 * n and set(per.values()) == {2}, per
        rc, _ = survivor.stop()
        assert rc == 0, survivor.text()[-2000:]
    finally:
        a.kill()
        b.kill()
