"""Channel leases: the rules on both databases, then two real ``tgmonitor run`` processes on PostgreSQL."""

from __future__ import annotations

import collections
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from monitor import models as m
from monitor.leases import Leases, live_nodes, owner_name
from monitor.models import now
from tests.service_helpers import MENTION, PLAIN, Proc
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

        # a few intervals once the split is stable: every channel polled, each by one process only
        wait_for(lambda: _owners(pg_url) == split, 10)
        split = _owners(pg_url)
        t0 = time.time()
        time.sleep(6)
        seen: dict[str, set[str]] = collections.defaultdict(set)
        for prefix, ch in pv.polls(since=t0):
            seen[ch].add(prefix)
        assert set(seen) == {f"lease_ch{i:02d}" for i in range(n)}
        assert all(len(v) == 1 for v in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}

        for i in range(n):
            pv.add(f"lease_ch{i:02d}", MENTION.format(n=i))
        assert wait_for(lambda: sink.count() >= n, 40), a.text()[-2000:]
        time.sleep(3)
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
        assert wait_for(lambda: sink.count() >= 2 * n, 40), survivor.text()[-2000:]
        time.sleep(3)
        per = _per_channel(sink)
        assert sink.count() == 2 * n and set(per.values()) == {2}, per
        rc, _ = survivor.stop()
        assert rc == 0, survivor.text()[-2000:]
    finally:
        a.kill()
        b.kill()
