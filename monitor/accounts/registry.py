"""The accounts' state in the database, shared by every process (tables ``telegram_accounts`` and
``channel_accounts``, migration 0011).

``telegram_accounts``: one row per account — which process runs it (``owner``, ``seen_at``: live while fresher
than ``[schedule] lease_seconds``), its state and why, when a limited account is tried again, its requests of
the last hour (minute buckets). ``channel_accounts``: per (channel, account) whether the account has joined the
channel (learned from its dialogs), whether it can read it at all, and the channel's access hash as this
account knows it (Telegram gives every account its own).

States: ``active``; ``limited`` (PeerFlood, a long flood wait: tried again from ``retry_at``); ``unreachable``
(its proxy or network, tried again from ``retry_at``); ``banned`` and ``dead`` (a revoked or never-made session:
checked again now and then, back after ``tgmonitor login --account NAME``). Only an account whose state is
active, or whose ``retry_at`` has passed, is given channels."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.db import database_now, sessionmaker

ACTIVE, LIMITED, UNREACHABLE, BANNED, DEAD = "active", "limited", "unreachable", "banned", "dead"
#: states that end by themselves at ``retry_at``
TEMPORARY = frozenset({LIMITED, UNREACHABLE})
#: how long the requests of an account are kept (minute buckets), for ``tgmonitor accounts``
REQUEST_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Known:
    """What one account knows of one channel."""

    joined: bool = False
    readable: bool | None = None
    access_hash: int | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    """Something an account just learned of a channel; None fields are left as they were."""

    joined: bool | None = None
    readable: bool | None = None
    access_hash: int | None = None
    error: str | None = None


def usable(row: m.TelegramAccount, at: datetime) -> bool:
    """Whether the account may be given channels at ``at``: active, or its temporary state has run out."""
    if row.state == ACTIVE:
        return True
    return row.state in TEMPORARY and (row.retry_at is None or row.retry_at <= at)


def minute(t: datetime) -> str:
    """The minute bucket of ``t`` (ISO, UTC, seconds cut)."""
    return t.replace(second=0, microsecond=0).isoformat()


async def register(engine: AsyncEngine, owner: str, rates: Mapping[str, int]) -> datetime:
    """This process runs these accounts (name -> requests per minute): create their rows if needed, record the
    owner and budget, refresh ``seen_at``. Returns the database's clock."""
    async with sessionmaker(engine).begin() as s:
        t = await database_now(s)
        have = {r.name: r for r in (await s.execute(select(m.TelegramAccount)
                                                    .where(m.TelegramAccount.name.in_(list(rates))))).scalars()}
        for n, rpm in rates.items():
            row = have.get(n)
            if row is None:
                s.add(m.TelegramAccount(name=n, owner=owner, state=ACTIVE, requests=[], seen_at=t,
                                        state_changed_at=t, requests_per_minute=rpm))
            else:
                row.owner, row.seen_at, row.requests_per_minute = owner, t, rpm
    return t


async def release(engine: AsyncEngine, owner: str) -> None:
    """A clean stop: this process's accounts are no longer run by anyone (their channels move at once)."""
    async with sessionmaker(engine).begin() as s:
        await s.execute(update(m.TelegramAccount).where(m.TelegramAccount.owner == owner)
                        .values(seen_at=None))


async def accounts(engine: AsyncEngine) -> dict[str, m.TelegramAccount]:
    """Every account row by name."""
    async with sessionmaker(engine)() as s:
        return {r.name: r for r in (await s.execute(select(m.TelegramAccount))).scalars()}


async def set_state(engine: AsyncEngine, name: str, state: str, reason: str | None = None, *,
                    retry_at: datetime | None = None, user_id: int | None = None) -> str | None:
    """Record an account's state; returns the state it had (None: no row yet, one is made)."""
    async with sessionmaker(engine).begin() as s:
        t = await database_now(s)
        row = await s.get(m.TelegramAccount, name)
        if row is None:
            s.add(m.TelegramAccount(name=name, state=state, state_reason=reason, state_changed_at=t,
                                    retry_at=retry_at, requests=[], user_id=user_id))
            return None
        before = row.state
        if before != state:
            row.state_changed_at = t
        row.state, row.state_reason, row.retry_at = state, reason, retry_at
        if user_id is not None:
            row.user_id = user_id
        return before


async def knowledge(engine: AsyncEngine, channel_ids: Collection[int] | None = None
                    ) -> dict[int, dict[str, Known]]:
    """``{channel id: {account: Known}}`` for the given channels (all when None)."""
    q = select(m.ChannelAccount.channel_id, m.ChannelAccount.account, m.ChannelAccount.joined,
               m.ChannelAccount.readable, m.ChannelAccount.access_hash)
    out: dict[int, dict[str, Known]] = {}
    async with sessionmaker(engine)() as s:
        ids = list(channel_ids) if channel_ids is not None else None
        chunks = [ids[i:i + 900] for i in range(0, len(ids), 900)] if ids is not None else [None]
        for chunk in chunks:  # SQLite caps the parameters of one statement
            qq = q if chunk is None else q.where(m.ChannelAccount.channel_id.in_(chunk))
            for cid, acc, joined, readable, ah in (await s.execute(qq)).all():
                out.setdefault(cid, {})[acc] = Known(bool(joined), readable, ah)
    return out


async def learn(engine: AsyncEngine, account: str, facts: Mapping[int, Fact]) -> None:
    """Record what ``account`` learned of these channels (one transaction). Joined implies readable."""
    if not facts:
        return
    async with sessionmaker(engine).begin() as s:
        t = await database_now(s)
        if await s.get(m.TelegramAccount, account) is None:
            s.add(m.TelegramAccount(name=account, state=ACTIVE, requests=[], state_changed_at=t))
            await s.flush()
        ids = list(facts)
        have: dict[int, m.ChannelAccount] = {}
        for i in range(0, len(ids), 900):
            rows = await s.execute(select(m.ChannelAccount).where(m.ChannelAccount.account == account,
                                                                  m.ChannelAccount.channel_id.in_(ids[i:i + 900])))
            have.update({r.channel_id: r for r in rows.scalars()})
        for cid, f in facts.items():
            row = have.get(cid)
            if row is None:
                row = m.ChannelAccount(channel_id=cid, account=account, joined=False)
                s.add(row)
            if f.joined is not None:
                row.joined = f.joined
                if f.joined:
                    row.readable = True
            if f.readable is not None:
                row.readable = f.readable
                if not f.readable:
                    row.joined = False
            if f.access_hash is not None:
                row.access_hash = f.access_hash
            if f.readable is not None or f.error is not None:
                row.error = f.error
            row.checked_at = t


async def count_requests(engine: AsyncEngine, counts: Mapping[str, Mapping[str, int]]) -> None:
    """Add ``{account: {minute: requests}}`` to the accounts' last-hour buckets (older buckets dropped)."""
    if not counts:
        return
    async with sessionmaker(engine).begin() as s:
        t = await database_now(s)
        oldest = minute(t - REQUEST_WINDOW)
        for name, per_minute in counts.items():
            row = await s.get(m.TelegramAccount, name)
            if row is None:
                continue
            merged: dict[str, int] = {k: int(v) for k, v in (row.requests or []) if k > oldest}
            for k, v in per_minute.items():
                if k > oldest:
                    merged[k] = merged.get(k, 0) + int(v)
            row.requests = [[k, merged[k]] for k in sorted(merged)]


async def set_channel_accounts(engine: AsyncEngine, mapping: Mapping[int, str | None]) -> None:
    """``channels.account`` of these channels (what ``status`` shows), one statement per account."""
    by_account: dict[str | None, list[int]] = {}
    for cid, acc in mapping.items():
        by_account.setdefault(acc, []).append(cid)
    async with sessionmaker(engine).begin() as s:
        for acc, ids in by_account.items():
            for i in range(0, len(ids), 900):
                await s.execute(update(m.Channel).where(m.Channel.id.in_(ids[i:i + 900]),
                                                        m.Channel.account.is_distinct_from(acc))
                                .values(account=acc))


async def summary(engine: AsyncEngine, configured: Iterable[str], lease_seconds: float) -> list[dict[str, Any]]:
    """Per account (configured ones first, then any other the database knows): authorised, channels assigned,
    joined, requests in the last hour, flood waits in the last hour, state — what ``tgmonitor accounts``
    prints."""
    configured = list(configured)
    async with sessionmaker(engine)() as s:
        t = await database_now(s)
        rows = {r.name: r for r in (await s.execute(select(m.TelegramAccount))).scalars()}
        assigned = dict((await s.execute(select(m.Channel.account, func.count())
                                         .where(m.Channel.account.is_not(None))
                                         .group_by(m.Channel.account))).all())
        joined = dict((await s.execute(select(m.ChannelAccount.account, func.count())
                                       .where(m.ChannelAccount.joined.is_(True))
                                       .group_by(m.ChannelAccount.account))).all())
        unreadable = dict((await s.execute(select(m.ChannelAccount.account, func.count())
                                           .where(m.ChannelAccount.readable.is_(False))
                                           .group_by(m.ChannelAccount.account))).all())
        floods = dict((await s.execute(select(m.FloodWait.account, func.count())
                                       .where(m.FloodWait.account.is_not(None),
                                              m.FloodWait.recorded_at > t - REQUEST_WINDOW)
                                       .group_by(m.FloodWait.account))).all())
        flood_until = dict((await s.execute(select(m.FloodWait.account, func.max(m.FloodWait.until))
                                            .where(m.FloodWait.account.is_not(None), m.FloodWait.until > t)
                                            .group_by(m.FloodWait.account))).all())
    names = configured + sorted(n for n in rows if n not in configured)
    out: list[dict[str, Any]] = []
    oldest = minute(t - REQUEST_WINDOW)
    for n in names:
        r = rows.get(n)
        live = bool(r is not None and r.seen_at is not None and r.seen_at > t - timedelta(seconds=lease_seconds))
        state = r.state if r is not None else "not started"
        if r is not None and r.state in TEMPORARY and r.retry_at is not None and r.retry_at <= t:
            state = f"{r.state} (retrying)"
        until = flood_until.get(n)
        out.append({
            "account": n,
            "configured": n in configured,
            "authorised": None if r is None else r.state not in (DEAD, BANNED),
            "state": state,
            "reason": r.state_reason if r is not None else None,
            "since": r.state_changed_at.isoformat() if r is not None and r.state_changed_at else None,
            "retry_at": r.retry_at.isoformat() if r is not None and r.retry_at else None,
            "running": live,
            "owner": r.owner if r is not None and live else None,
            "channels": int(assigned.get(n, 0)),
            "joined": int(joined.get(n, 0)),
            "unreadable": int(unreadable.get(n, 0)),
            "requests_1h": sum(int(v) for k, v in (r.requests or []) if k > oldest) if r is not None else 0,
            "flood_waits_1h": int(floods.get(n, 0)),
            "flood_wait_until": until.isoformat() if until is not None else None,
        })
    return out
