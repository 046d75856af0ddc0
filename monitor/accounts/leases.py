"""Leases when the processes run named Telegram accounts (``[[telegram.accounts]]``): a process claims the
channels its accounts read best.

Every process computes the same plan from the same database: the accounts that are live (their process's
``seen_at`` fresher than ``lease_seconds``) and usable (not dead, banned, or limited until later), what each
knows of each channel (``channel_accounts``: joined, readable), and :func:`monitor.accounts.assign.assign`.
A process leases exactly the Telethon channels planned for its own accounts; the channels of other sources
are spread over the live processes by rendezvous hashing. A channel planned elsewhere is given back; one
planned here but still leased by a live process is taken when that process gives it back on its own next round
(it computes the same plan), or when its lease expires. So a private channel only one process's account can
read is leased by that process, a joined channel goes to a process whose account has joined it, and an
account that dies or is limited loses its channels to the others within one lease round (a third of
``lease_seconds``) — and gets them back when it recovers.

Times are the database's clock, as in :mod:`monitor.leases`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.accounts import registry
from monitor.accounts.assign import AccountSlot, Assignment, assign, needs_from, weight
from monitor.db import database_now
from monitor.leases import LeaseChange, Leases

#: (source, poll interval in seconds) of each channel row this process is configured with
ChannelInfo = Mapping[int, tuple[str, float]]


async def plan(engine: AsyncEngine, channels: ChannelInfo, ttl: float, at: datetime) -> Assignment:
    """The accounts' plan for the Telethon channels among ``channels``: over every live, usable account."""
    rows = await registry.accounts(engine)
    live = [r for r in rows.values()
            if r.seen_at is not None and r.seen_at > at - timedelta(seconds=ttl) and registry.usable(r, at)]
    slots = [AccountSlot(r.name, float(r.requests_per_minute or 20)) for r in live]
    tg = {cid: iv for cid, (src, iv) in channels.items() if src == "telethon"}
    known = await registry.knowledge(engine, list(tg))
    facts = {cid: {a: (k.joined, k.readable) for a, k in per.items()} for cid, per in known.items()}
    return assign(needs_from(tg, facts), slots)


def _by_weight(channel_id: int, owners: list[str]) -> str:
    """The process a channel of another source goes to: rendezvous hashing over the live processes."""
    return max(owners, key=lambda n: weight(channel_id, n))


class AccountLeases(Leases):
    """:class:`~monitor.leases.Leases` whose share is the plan of the accounts (see the module docstring).

    ``rates()`` gives this process's accounts (name -> requests per minute), ``channels()`` the source and
    interval of each configured channel row; both are read every round (a reload may change them)."""

    def __init__(self, engine: AsyncEngine, owner: str, ttl: float, *, rates: Callable[[], Mapping[str, int]],
                 channels: Callable[[], ChannelInfo], pid: int | None = None) -> None:
        super().__init__(engine, owner, ttl, pid=pid)
        self.rates = rates
        self.channels = channels
        self.plan: Assignment = Assignment()

    async def _mine(self, wanted: set[int], at: datetime) -> set[int]:
        info = {cid: v for cid, v in self.channels().items() if cid in wanted}
        self.plan = await plan(self.engine, info, self.ttl, at)
        mine_names = set(self.rates())
        mine = {cid for cid, acc in self.plan.by_channel.items() if acc in mine_names}
        others = [cid for cid, (src, _iv) in info.items() if src != "telethon"]
        if others:
            async with self.sessions() as s:
                nodes = list((await s.execute(select(m.ServiceNode.owner).where(
                    m.ServiceNode.seen_at > at - timedelta(seconds=self.ttl)))).scalars())
            nodes = sorted(set(nodes) | {self.owner})
            mine |= {cid for cid in others if _by_weight(cid, nodes) == self.owner}
        return mine

    async def rebalance(self, wanted: Collection[int], busy: Collection[int] = ()) -> LeaseChange:
        """Renew, give back and claim so that this process holds what the plan gives its accounts."""
        live = await self.heartbeat()
        at = await registry.register(self.engine, self.owner, self.rates())
        mine = await self._mine(set(wanted), at)
        before = set(self.held)
        async with self.sessions.begin() as s:
            await self._no_waiting(s)
            t = await database_now(s)
            until = self._until(t)
            held = set((await s.execute(select(m.Channel.id).where(m.Channel.lease_owner == self.owner))).scalars())
            give = sorted(held - mine - set(busy))
            for i in range(0, len(give), 900):
                await s.execute(update(m.Channel).where(m.Channel.id.in_(give[i:i + 900]),
                                                        m.Channel.lease_owner == self.owner)
                                .values(lease_owner=None, lease_until=None))
            keep = sorted(held - set(give))
            for i in range(0, len(keep), 900):
                await s.execute(update(m.Channel).where(m.Channel.id.in_(keep[i:i + 900]),
                                                        m.Channel.lease_owner == self.owner)
                                .values(lease_until=until))
            await self._claim(s, mine - held, t)
            now_held = set((await s.execute(select(m.Channel.id).where(m.Channel.lease_owner == self.owner)))
                           .scalars())
        self.held = now_held
        return LeaseChange(held=set(now_held), gained=now_held - before, lost=before - now_held, live_nodes=live)

    async def release_all(self) -> None:
        """A clean stop: the leases and this process's accounts are given up, so others take over at once."""
        await super().release_all()
        await registry.release(self.engine, self.owner)
