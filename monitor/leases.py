"""Channel leases: several ``tgmonitor run`` processes against one database share the channels.

A channel is polled only by the process whose name is in its row's ``lease_owner`` while ``lease_until``
is in the future. Every process renews its leases and a heartbeat row (``service_nodes``) every few
seconds; it holds about ``ceil(channels / live processes)`` channels, hands back the excess to a newcomer
and claims free or expired ones with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises
writers, and the claim is a conditional UPDATE there). A process that dies stops renewing: its leases
expire after ``lease_seconds`` and the others take its channels over.

Every time here is the database's clock (``now()`` on PostgreSQL), never the host's: processes on hosts whose
clocks disagree by minutes would otherwise each see the other's fresh leases as expired (and poll the same
channels), or their own expired ones as fresh.

The owner name is derived from the host and the session lock's path, not the pid: the session lock lets only
one live process have it, and a process restarted after a crash gets its own leases back at once instead
of waiting for them to expire."""

from __future__ import annotations

import hashlib
import math
import os
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, text, true, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from monitor import models as m
from monitor.db import database_now, is_sqlite, sessionmaker

LOCK_TIMEOUT_MS = 1500


def owner_name(lock_file: Path, host: str | None = None) -> str:
    """A stable name for the process that holds ``lock_file`` on this host (at most 128 characters)."""
    host = host or socket.gethostname()
    digest = hashlib.sha1(str(lock_file.resolve()).encode()).hexdigest()[:12]
    return f"{host[:100]}:{digest}"


@dataclass(slots=True)
class LeaseChange:
    """The outcome of one :meth:`Leases.rebalance` round."""

    held: set[int] = field(default_factory=set)
    gained: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    live_nodes: int = 1


class Leases:
    """The leases of one process. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine, owner: str, ttl: float, *, pid: int | None = None) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine)
        self.owner = owner
        self.ttl = float(ttl)
        self.pid = pid if pid is not None else os.getpid()
        self.held: set[int] = set()
        self._sqlite = is_sqlite(engine)

    async def _no_waiting(self, s: AsyncSession) -> None:
        # A lease round must never queue behind a poll's row lock (its connection would then hold others
        # up, across processes too): on PostgreSQL it gives up after a moment and the next round retries.
        if not self._sqlite:
            await s.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))

    def _until(self, t: datetime) -> datetime:
        return t + timedelta(seconds=self.ttl)

    async def _claim(self, s: AsyncSession, ids: Iterable[int], t: datetime, *, limit: int | None = None) -> None:
        """Take the leases of those of ``ids`` that nobody holds (or whose lease ran out by ``t``), lowest ids
        first, at most ``limit`` of them; rows another process has locked are skipped, not waited for."""
        until = self._until(t)
        free = or_(m.Channel.lease_owner.is_(None), m.Channel.lease_until.is_(None), m.Channel.lease_until < t)
        want = sorted(ids)
        for i in range(0, len(want), 900):  # bound the IN list (SQLite's variable limit)
            if limit is not None and limit <= 0:
                return
            q = select(m.Channel.id).where(m.Channel.id.in_(want[i:i + 900]), free).order_by(m.Channel.id)
            if limit is not None:
                q = q.limit(limit)
            if not self._sqlite:
                q = q.with_for_update(skip_locked=True)
            found = list((await s.execute(q)).scalars())
            if found:
                # Conditional: on SQLite another process may have claimed one since the SELECT.
                await s.execute(update(m.Channel).where(m.Channel.id.in_(found), free)
                                .values(lease_owner=self.owner, lease_until=until))
            if limit is not None:
                limit -= len(found)

    async def heartbeat(self) -> int:
        """Say this process is alive; return how many processes are (this one included)."""
        async with self.sessions.begin() as s:
            t = await database_now(s)
            res = await s.execute(update(m.ServiceNode).where(m.ServiceNode.owner == self.owner)
                                  .values(seen_at=t, pid=self.pid))
            if not cast("CursorResult[Any]", res).rowcount:
                s.add(m.ServiceNode(owner=self.owner, host=self.owner.rsplit(":", 1)[0], pid=self.pid,
                                    started_at=t, seen_at=t))
            live = (await s.execute(select(func.count()).select_from(m.ServiceNode)
                                    .where(m.ServiceNode.seen_at > t - timedelta(seconds=self.ttl)))).scalar_one()
        return max(1, int(live))

    async def rebalance(self, wanted: Collection[int], busy: Collection[int] = ()) -> LeaseChange:
        """Renew this process's leases on ``wanted`` channels, give back what it holds beyond its fair
        share (never a channel in ``busy``, i.e. being polled now) and claim free or expired ones up to
        it. ``wanted`` are the ids of the enabled channels in this process's configuration."""
        live = await self.heartbeat()
        wanted = set(wanted)
        before = set(self.held)
        async with self.sessions.begin() as s:
            await self._no_waiting(s)
            t = await database_now(s)
            until = self._until(t)
            # Channels no longer configured here go back to the pool.
            await s.execute(update(m.Channel).where(m.Channel.lease_owner == self.owner,
                                                    m.Channel.id.not_in(wanted) if wanted else true())
                            .values(lease_owner=None, lease_until=None))
            if wanted:
                await s.execute(update(m.Channel).where(m.Channel.lease_owner == self.owner,
                                                        m.Channel.id.in_(wanted))
                                .values(lease_until=until))
            mine = set((await s.execute(select(m.Channel.id).where(m.Channel.lease_owner == self.owner)))
                       .scalars())
            target = math.ceil(len(wanted) / live) if wanted else 0
            if len(mine) > target:
                spare = sorted(mine - set(busy), reverse=True)[: len(mine) - target]
                if spare:
                    await s.execute(update(m.Channel).where(m.Channel.id.in_(spare),
                                                            m.Channel.lease_owner == self.owner)
                                    .values(lease_owner=None, lease_until=None))
                    mine -= set(spare)
            if len(mine) < target:
                await self._claim(s, wanted, t, limit=target - len(mine))
                mine = set((await s.execute(select(m.Channel.id)
                                            .where(m.Channel.lease_owner == self.owner))).scalars())
        self.held = mine
        return LeaseChange(held=set(mine), gained=mine - before, lost=before - mine, live_nodes=live)

    async def hold(self, channel_id: int) -> bool | None:
        """Renew the lease on one channel right before polling it: True when it is ours, False when it is no
        longer ours, None when its row is busy right now (skip this poll, keep the channel)."""
        try:
            async with self.sessions.begin() as s:
                await self._no_waiting(s)
                t = await database_now(s)
                res = await s.execute(update(m.Channel)
                                      .where(m.Channel.id == channel_id, m.Channel.lease_owner == self.owner)
                                      .values(lease_until=self._until(t)))
                ok = bool(cast("CursorResult[Any]", res).rowcount)
        except DBAPIError:
            return None  # the row is busy (being written): skip this poll, the next one goes ahead
        if not ok:
            self.held.discard(channel_id)
        return ok

    async def hold_many(self, channel_ids: Collection[int]) -> tuple[set[int], set[int]]:
        """Renew the leases on the channels of a poll cycle in one statement: (renewed, busy). A channel in
        neither is no longer ours; a busy one (its row locked by a write now, PostgreSQL) is still ours but
        skips this cycle. Raises on a database failure (the caller skips the cycle)."""
        ids = list(channel_ids)
        if not ids:
            return set(), set()
        async with self.sessions.begin() as s:
            await self._no_waiting(s)
            t = await database_now(s)
            mine = (m.Channel.id.in_(ids), m.Channel.lease_owner == self.owner)
            target = m.Channel.id.in_(ids)
            if not self._sqlite:
                # rows locked by a write in progress are skipped, not waited for (nor do they fail the rest)
                target = m.Channel.id.in_(select(m.Channel.id).where(*mine).with_for_update(skip_locked=True)
                                          .scalar_subquery())
            res = await s.execute(update(m.Channel).where(target, *mine).values(lease_until=self._until(t))
                                  .returning(m.Channel.id))
            renewed = set(res.scalars())
            owned = set((await s.execute(select(m.Channel.id).where(*mine))).scalars())
        self.held -= set(ids) - owned
        return renewed, owned - renewed

    async def release_all(self) -> None:
        """Give every lease back and remove the heartbeat (a clean stop: others take over at once)."""
        async with self.sessions.begin() as s:
            await s.execute(update(m.Channel).where(m.Channel.lease_owner == self.owner)
                            .values(lease_owner=None, lease_until=None))
            await s.execute(delete(m.ServiceNode).where(m.ServiceNode.owner == self.owner))
        self.held = set()

    async def prune_nodes(self, older_than: timedelta = timedelta(days=1)) -> int:
        """Forget heartbeats of processes gone for a day (status would list them otherwise)."""
        async with self.sessions.begin() as s:
            t = await database_now(s)
            res = await s.execute(delete(m.ServiceNode).where(m.ServiceNode.seen_at < t - older_than))
            return int(cast("CursorResult[Any]", res).rowcount or 0)


async def live_nodes(engine: AsyncEngine, ttl: float) -> list[m.ServiceNode]:
    """The processes whose heartbeat is fresher than ``ttl`` seconds."""
    async with sessionmaker(engine)() as s:
        t = await database_now(s)
        rows = await s.execute(select(m.ServiceNode).where(m.ServiceNode.seen_at > t - timedelta(seconds=ttl))
                               .order_by(m.ServiceNode.owner))
        return list(rows.scalars())


def lease_is_live(channel: m.Channel, at: datetime | None = None) -> bool:
    """Whether a channel row's lease is held at ``at`` (best the database's clock; default this host's)."""
    at = at or m.now()
    return bool(channel.lease_owner) and channel.lease_until is not None and channel.lease_until > at
