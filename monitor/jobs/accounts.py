"""Several Telegram accounts in one process (``[[telegram.accounts]]``, issue 16): one Telethon client per account,
each with its own request budget, flood waits, lock and incidents, and failover between them.

:class:`AccountPool` is the Telethon source's jobs object when accounts are configured (``source_jobs`` picks
it): the service, ``run --once`` and ``backfill`` speak to it exactly as to :class:`~monitor.jobs.telethon
.TelethonJobs`. A poll cycle's channels are split by the plan of :mod:`monitor.accounts.assign` (prefer the
account that has joined the channel, never one that cannot read it, within each account's budget) and every
account polls its share at the same time, through its own :class:`AccountJobs` (the ordinary Telethon jobs, with
the account's client, budget and access hashes).

Failover. An account whose session dies, that is banned, or that Telegram limits (``PEER_FLOOD``, a flood wait
of ``[telegram] failover_flood_wait`` seconds or more) is taken out at once: its channels are planned again over
the other accounts and polled by them *in the same cycle*, an operator incident (one alert) says so, and the
account is tried again later (a limited one when its wait is over; a dead or banned one every
``RECHECK_DEAD``, so that ``tgmonitor login --account NAME`` brings it back without a restart). When it is back,
the plan gives it its channels again (rendezvous hashing: exactly the ones it had). Nothing is lost or doubled
on the way: the cursor is per channel, not per account, and every page is stored with it in one transaction, so
the account taking over continues from the last stored message, and a page stored twice is stored once.

An account Telegram refuses a channel to (``CHANNEL_PRIVATE``: a private channel it is not a member of) records
that and the channel is retried by another account in the same cycle; only when no account of any live
process may read it is it marked unavailable. Which accounts have joined which channels is learned from each
account's dialogs (``messages.GetDialogs``, at start and hourly) and kept in ``channel_accounts`` with the
access hash each account knows (Telegram gives every account its own)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update
from telethon import errors
from telethon.tl import functions, types

from monitor import health
from monitor import models as m
from monitor.accounts import registry
from monitor.accounts.assign import AccountSlot, ChannelNeed, assign
from monitor.accounts.registry import ACTIVE, BANNED, DEAD, LIMITED, UNREACHABLE, Fact, Known
from monitor.budget import Deferred
from monitor.config import ChannelConfig, account_rate, account_settings
from monitor.jobs.base import PollReport, Progress, SessionDead
from monitor.jobs.telethon import TelethonJobs
from monitor.jobs.telethon_base import RESOLVE, ChannelRows, SystemClock, build_budget
from monitor.logs import event
from monitor.sources.telethon import (
    NETWORK_ERRORS,
    ChannelInfo,
    ClientSetupError,
    TelegramUnreachable,
    TelethonSource,
    is_session_dead,
    make_client,
    network_reason,
)

if TYPE_CHECKING:
    from telethon import TelegramClient

    from monitor.runtime import Runtime

log = logging.getLogger("monitor.jobs.accounts")
T = TypeVar("T")

#: the operator incident of an account taken out (one per account while it is out)
ACCOUNT_DOWN = health.ACCOUNT_DOWN
#: a limited account (PEER_FLOOD) is tried again after this long, doubling while it stays limited (at most a day)
PEER_FLOOD_RETRY = 3600.0
#: a dead or banned account is tried again this often (a new login brings it back without a restart)
RECHECK_DEAD = 600.0
#: an unreachable account (its proxy) is tried again after 30 s, doubling up to 10 min
UNREACHABLE_FIRST, UNREACHABLE_MAX = 30.0, 600.0
#: how often each account's dialogs are read again to learn which channels it has joined
DIALOG_SYNC_EVERY = 3600.0
#: dialog pages read at most per sync (100 dialogs each: Telegram's cap is 500 channels and 500 groups)
DIALOG_PAGES = 12
#: a channel polled within this long stays in the plan (the plan covers every channel held, not one cycle's)
PLAN_KEEP = 3 * 3600.0

#: unavailable reasons that are about the account, not the channel: another account may read it
_ACCOUNT_SPECIFIC = ("CHANNEL_PRIVATE", "CHANNEL_INVALID", "PEER_ID_INVALID", "among the account's channels")


class AccountLimited(SessionDead):
    """Telegram limits this account for a while (``PEER_FLOOD``, a long flood wait): take it out until
    ``retry_after`` seconds from now. A :class:`SessionDead` so that every Telethon job stops at once."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def classify(exc: BaseException, name: str = "NAME") -> tuple[str, str]:
    """(state, reason) of the account ``name`` whose jobs raised ``exc``."""
    if isinstance(exc, AccountLimited):
        return LIMITED, exc.reason
    if isinstance(exc, TelegramUnreachable):
        return UNREACHABLE, exc.reason
    cause = exc.__context__ or exc.__cause__
    if isinstance(cause, errors.UserDeactivatedBanError):
        return BANNED, "banned by Telegram (USER_DEACTIVATED_BAN)"
    if isinstance(cause, errors.UserDeactivatedError):
        return BANNED, "the account was deleted (USER_DEACTIVATED)"
    if isinstance(cause, errors.RPCError):
        return DEAD, f"the session stopped working ({cause.message}): run `tgmonitor login --account {name}`"
    return DEAD, str(exc)


@dataclass(slots=True)
class AccountStatus:
    """One account's state as this process sees it now."""

    state: str = ACTIVE
    reason: str | None = None
    retry_at: datetime | None = None
    strikes: int = 0  # failures in a row of the same kind (the retry delay doubles)


@dataclass(frozen=True, slots=True)
class Failover:
    """One account taken out: why, how many channels it had in the cycle, and how long until the other
    accounts had polled them (the failover time)."""

    account: str
    state: str
    reason: str
    channels: int
    seconds: float


# --------------------------------------------------------------------------- one account's jobs


class AccountJobs(TelethonJobs):
    """The Telethon jobs of one account of several: its client (from its session), its budget, its flood waits,
    its access hashes; what it learns (joined, readable) goes to the pool. One batch at a time (``lock``)."""

    def __init__(self, rt: Runtime, pool: AccountPool, name: str, **kw: Any) -> None:
        super().__init__(rt, **kw)
        self.pool = pool
        self.account = name
        self.lock = asyncio.Lock()
        self.minutes: Counter[str] = Counter()  # requests per minute bucket, not yet written
        self.synced_at: float | None = None  # monotonic time of the last dialog sync

    # ------------------------------------------------------------------ session

    async def _open(self) -> TelethonSource:
        if self.src is None and self._client is None:
            try:
                self._client = make_client(account_settings(self.settings, self.account))
            except ClientSetupError as exc:
                raise SessionDead(str(exc)) from None
        return await super()._open()

    async def reset(self) -> None:
        """Forget the client (a re-login writes a new session: the next open reads it afresh)."""
        await self.aclose()
        self.src, self._client, self._opened = None, None, False

    async def _load_flood_waits(self) -> None:
        """Only this account's flood waits are its own (another account's say nothing about this one)."""
        now = self.clock.now()
        async with self.store.sessions() as s:
            rows = (await s.execute(select(m.FloodWait.request_type, m.FloodWait.until)
                                    .where(m.FloodWait.until > now, m.FloodWait.account == self.account))).all()
        for kind, until in rows:
            self.budget.defer(kind, (until - now).total_seconds())

    # ------------------------------------------------------------------ one request

    async def _call(self, kind: str, fn: Callable[[], Awaitable[T]], *, wait_floods: bool = False) -> T:
        before = self.requests
        try:
            return await super()._call(kind, fn, wait_floods=wait_floods)
        except errors.PeerFloodError:
            raise AccountLimited("Telegram limits this account (PEER_FLOOD)", PEER_FLOOD_RETRY) from None
        finally:
            if self.requests > before:
                self.minutes[registry.minute(self.clock.now())] += self.requests - before

    async def _flood(self, kind: str, seconds: float) -> None:
        """Remember the flood wait as this account's; one of ``failover_flood_wait`` or more takes it out."""
        self.budget.defer(kind, seconds)
        until = self.clock.now() + timedelta(seconds=seconds)
        async with self.store.sessions.begin() as s:
            s.add(m.FloodWait(request_type=kind, seconds=int(seconds), until=until, recorded_at=self.clock.now(),
                              account=self.account))
        event(log, logging.WARNING, "flood wait", account=self.account, request=kind, seconds=int(seconds),
              until=until.isoformat())
        if seconds >= self.settings.telegram.failover_flood_wait:
            raise AccountLimited(f"a flood wait of {int(seconds)} s on {kind}", seconds)

    # ------------------------------------------------------------------ channels as this account knows them

    async def _rows(self) -> ChannelRows:
        """The stored channels with this account's access hashes (None: it has none yet, so it resolves the
        channel once itself: another account's hash is refused)."""
        rows = await super()._rows()
        seen: set[int] = set()
        for d in (rows.by_ref, rows.by_id, rows.by_name):
            for r in d.values():
                if r.id not in seen:
                    seen.add(r.id)
                    r.access_hash = self.pool.access_hash(self.account, r.id)
        return rows

    async def _resolve(self, cfg: ChannelConfig, *, wait_floods: bool = False) -> ChannelInfo:
        """As usual, but a poll never waits for a resolution token: a channel this account must resolve first
        (one taken over from another account, whose access hash is no use here) is deferred to a later cycle
        instead, so that a failover of hundreds of channels never holds up the account's own polls. Telegram
        punishes quick resolves hardest: they go at the budget's resolve rate, a few a cycle."""
        if not wait_floods:
            kind = RESOLVE if cfg.username else "GetChannelsRequest"
            wait = self.budget.wait_time(kind)
            if wait > 0:
                raise Deferred(kind, self.budget.clock() + wait, wait)
        return await super()._resolve(cfg, wait_floods=wait_floods)

    async def _adopt(self, cfg: ChannelConfig, row: m.Channel | None, info: ChannelInfo) -> m.Channel:
        stored = await super()._adopt(cfg, row, info)
        self.pool.learned(self.account, stored.id, Fact(readable=True, access_hash=info.access_hash))
        return stored

    async def _mark_unavailable(self, cfg: ChannelConfig, row: m.Channel | None, reason: str,
                                rep: PollReport) -> None:
        """Refused to this account: another account (here, or of another process) may read it — then it is
        not unavailable, only not this account's."""
        if row is not None and any(s in reason for s in _ACCOUNT_SPECIFIC):
            self.pool.learned(self.account, row.id, Fact(readable=False, error=reason))
            if await self.pool.others_may_read(row.id, cfg.key):
                rep.error = f"account {self.account} cannot read it ({reason}); another account will"
                event(log, logging.INFO, "channel refused to this account", channel=cfg.key, account=self.account,
                      reason=reason)
                return
        await super()._mark_unavailable(cfg, row, reason, rep)

    async def _dialog_tops(self, src: TelethonSource, work: Sequence[tuple[ChannelConfig, m.Channel, PollReport]]
                           ) -> dict[int, int]:
        """As usual; a channel GetPeerDialogs answers for is one this account has joined."""
        tops = await super()._dialog_tops(src, work)
        for _, row, _ in work:
            if row.tg_id in tops and not self.pool.is_joined(self.account, row.id):
                self.pool.learned(self.account, row.id, Fact(joined=True))
        return tops

    async def sync_dialogs(self, by_tg_id: Mapping[int, int], by_name: Mapping[str, int]) -> int:
        """Read the account's dialogs (``messages.GetDialogs``, 100 a page) and record which configured channels
        it has joined, with its access hashes; a channel known joined and absent is no longer joined. Returns
        the number of channels joined (configured or not)."""
        src = await self._open()
        client = src.client
        joined: dict[int, tuple[int, str | None, str | None]] = {}
        offset_date: Any = None
        offset_id = 0
        offset_peer: Any = types.InputPeerEmpty()
        complete = False
        for _ in range(DIALOG_PAGES):
            req = functions.messages.GetDialogsRequest(offset_date=offset_date, offset_id=offset_id,
                                                       offset_peer=offset_peer, limit=100, hash=0)
            r: Any = await self._call("GetDialogsRequest", partial(client, req))
            if isinstance(r, types.messages.DialogsNotModified):
                return len(joined)
            chats = {c.id: c for c in r.chats}
            for c in r.chats:
                if isinstance(c, types.Channel) and not c.left and c.access_hash is not None:
                    joined[c.id] = (c.access_hash, c.username.lower() if c.username else None, c.title)
            if isinstance(r, types.messages.Dialogs) or len(r.dialogs) < 100:
                complete = True
                break
            last = r.dialogs[-1]
            msg = next((x for x in r.messages if x.id == last.top_message
                        and getattr(x, "peer_id", None) == last.peer), None)
            peer_id = getattr(last.peer, "channel_id", None) or getattr(last.peer, "chat_id", None) \
                or getattr(last.peer, "user_id", None)
            ent = chats.get(peer_id)
            if msg is None or ent is None or (offset_id, offset_date) == (msg.id, msg.date):
                break
            offset_id, offset_date = msg.id, msg.date
            offset_peer = types.InputPeerChannel(ent.id, ent.access_hash) if isinstance(ent, types.Channel) \
                else types.InputPeerEmpty()
        facts: dict[int, Fact] = {}
        for tg_id, (ah, username, title) in joined.items():
            rid = by_tg_id.get(tg_id)
            if rid is None and username is not None:
                rid = by_name.get(username)
                if rid is not None:
                    # a channel configured by name that was never resolved: the dialog tells its id, so no
                    # account has to resolve it (ResolveUsername is the request Telegram punishes hardest)
                    try:
                        await self.store.upsert_channel(username=username, tg_id=tg_id, title=title, source="telethon")
                    except ValueError as exc:
                        event(log, logging.DEBUG, "dialog not matched", channel=username, error=str(exc))
            if rid is not None:
                facts[rid] = Fact(joined=True, access_hash=ah)
        if complete:
            for rid in self.pool.joined_channels(self.account):
                if rid not in facts:
                    facts[rid] = Fact(joined=False)
        fresh = [rid for rid, f in facts.items() if f.joined and not self.pool.is_joined(self.account, rid)]
        for rid, f in facts.items():
            self.pool.learned(self.account, rid, f)
        if fresh:
            # a channel marked unavailable because no account read it (a private one) that this account turns out
            # to be in: read it now, not at the unavailable retry hours later
            async with self.store.sessions.begin() as s:
                for i in range(0, len(fresh), 900):
                    await s.execute(update(m.Channel).where(m.Channel.id.in_(fresh[i:i + 900]),
                                                            m.Channel.status == "unavailable")
                                    .values(not_before=None))
        self.synced_at = self.clock.monotonic()
        event(log, logging.INFO, "dialogs read", account=self.account, joined=len(joined),
              configured_joined=sum(1 for f in facts.values() if f.joined))
        return len(joined)


# --------------------------------------------------------------------------- the pool


@dataclass(slots=True)
class _Outcome:
    account: str
    channels: list[ChannelConfig]
    reports: list[PollReport] | None = None
    error: BaseException | None = None
    took: float = 0.0


@dataclass(slots=True)
class _Pending:
    facts: dict[str, dict[int, Fact]] = field(default_factory=dict)


class AccountPool:
    """:class:`~monitor.jobs.SourceJobs` for the Telethon source with several accounts (see the module
    docstring). ``clock``/``sleep`` are for tests; each account's client comes from its session (or the
    configured ``client_factory``, called with :func:`~monitor.config.account_settings`)."""

    source = "telethon"

    def __init__(self, rt: Runtime, *, clock: Any = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 backfill_max_wait: float = 300.0) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.store = rt.store
        self.clock = clock or SystemClock()
        self.jobs: dict[str, AccountJobs] = {}
        for acc in rt.settings.telegram.accounts:
            budget = build_budget(account_rate(rt.settings, acc.name), clock=self.clock.monotonic)
            self.jobs[acc.name] = AccountJobs(rt, self, acc.name, budget=budget, clock=self.clock, sleep=sleep,
                                              backfill_max_wait=backfill_max_wait)
        self.status: dict[str, AccountStatus] = {n: AccountStatus() for n in self.jobs}
        self.known: dict[int, dict[str, Known]] = {}
        self._pending = _Pending()
        self._loaded = False
        self.plan: dict[int, str | None] = {}  # channel row id -> account, as last planned
        self.intervals: dict[int, float] = {}  # channel row id -> poll interval (the plan's cost)
        self.last_seen: dict[int, float] = {}  # channel row id -> monotonic time it was last in a batch
        self.written: dict[int, str | None] = {}  # channels.account as last written
        self.failovers: list[Failover] = []
        self.push = None  # push updates are not run per account yet: polling covers every account's channels

    # ------------------------------------------------------------------ what the account jobs ask

    @property
    def requests(self) -> int:
        """Requests sent by every account (tests and benchmarks read it)."""
        return sum(j.requests for j in self.jobs.values())

    def access_hash(self, account: str, channel_id: int) -> int | None:
        k = self.known.get(channel_id, {}).get(account)
        return k.access_hash if k is not None else None

    def is_joined(self, account: str, channel_id: int) -> bool:
        k = self.known.get(channel_id, {}).get(account)
        return bool(k and k.joined)

    def joined_channels(self, account: str) -> list[int]:
        return [cid for cid, per in self.known.items() if per.get(account) is not None and per[account].joined]

    def learned(self, account: str, channel_id: int, fact: Fact) -> None:
        """Something an account learned of a channel: in memory now, in the database after the batch."""
        old = self.known.setdefault(channel_id, {}).get(account) or Known()
        joined = old.joined if fact.joined is None else fact.joined
        readable = old.readable if fact.readable is None else fact.readable
        if fact.joined:
            readable = True
        if fact.readable is False:
            joined = False
        self.known[channel_id][account] = Known(joined, readable,
                                                fact.access_hash if fact.access_hash is not None else old.access_hash)
        pend = self._pending.facts.setdefault(account, {})
        prev = pend.get(channel_id)
        if prev is not None:  # merge with what is not written yet
            fact = Fact(joined=fact.joined if fact.joined is not None else prev.joined,
                        readable=fact.readable if fact.readable is not None else prev.readable,
                        access_hash=fact.access_hash if fact.access_hash is not None else prev.access_hash,
                        error=fact.error if fact.error is not None else prev.error)
        pend[channel_id] = fact

    async def others_may_read(self, channel_id: int, key: str) -> bool:
        """Whether an account other than the ones refused may read the channel: a usable account of this process,
        or a live one of another process, not known to be refused it."""
        per = self.known.get(channel_id, {})
        if any(self.usable(n) and (per.get(n) is None or per[n].readable is not False) for n in self.jobs):
            return True
        rows = await registry.accounts(self.store.engine)
        at = self.clock.now()
        ttl = timedelta(seconds=self.settings.schedule.lease_seconds)
        remote = [r.name for r in rows.values() if r.name not in self.jobs and r.seen_at is not None
                  and r.seen_at > at - ttl and registry.usable(r, at)]
        if not remote:
            return False
        known = (await registry.knowledge(self.store.engine, [channel_id])).get(channel_id, {})
        return any(known.get(n) is None or known[n].readable is not False for n in remote)

    # ------------------------------------------------------------------ account states

    def usable(self, name: str) -> bool:
        st = self.status[name]
        if st.state == ACTIVE:
            return True
        return st.retry_at is not None and st.retry_at <= self.clock.now()

    async def _load(self) -> None:
        """Once: every account's stored state (a limited one stays out until its time) and the knowledge."""
        if self._loaded:
            return
        rows = await registry.accounts(self.store.engine)
        now = self.clock.now()
        for name, st in self.status.items():
            r = rows.get(name)
            if r is None or r.state == ACTIVE:
                continue
            st.state, st.reason = r.state, r.state_reason
            # a dead or banned account is checked again at start (it may have logged in since)
            st.retry_at = r.retry_at if r.state in registry.TEMPORARY else now
        self.known = await registry.knowledge(self.store.engine)
        self._loaded = True

    async def _down(self, name: str, exc: BaseException, channels: int) -> None:
        """Take an account out: its state, when it is tried again, one incident (and operator alert)."""
        state, reason = classify(exc, name)
        st = self.status[name]
        was = st.state
        st.strikes = st.strikes + 1 if was == state else 1
        if state == LIMITED:
            base = exc.retry_after if isinstance(exc, AccountLimited) else PEER_FLOOD_RETRY
            wait = min(86400.0, base * (2 ** (st.strikes - 1) if base >= PEER_FLOOD_RETRY else 1))
        elif state == UNREACHABLE:
            wait = min(UNREACHABLE_MAX, UNREACHABLE_FIRST * 2 ** (st.strikes - 1))
        else:
            wait = RECHECK_DEAD
        if was in (BANNED, DEAD) and state == DEAD:
            state, reason = was, st.reason or reason  # a recheck of a banned account failing says nothing new
        st.state, st.reason = state, reason
        st.retry_at = self.clock.now() + timedelta(seconds=wait)
        job = self.jobs[name]
        if state in (DEAD, BANNED):
            await job.reset()  # the next try reads the session afresh
        elif state == UNREACHABLE:
            await job._drop_connection()
        await registry.set_state(self.store.engine, name, state, reason, retry_at=st.retry_at)
        if was == state and was != ACTIVE:
            return  # a failed retry: no new alert
        event(log, logging.ERROR if state in (DEAD, BANNED) else logging.WARNING, "account taken out",
              account=name, state=state, reason=reason, retry_at=st.retry_at.isoformat(), channels=channels)
        if state == UNREACHABLE:
            return  # its proxy or network: the channels move, the service reports a whole outage itself
        others = [n for n in self.jobs if n != name and self.usable(n)]
        moved = f"its channels moved to {', '.join(others)}" if others else "no other account of this process is left"
        detail = f"{state}: {reason}; {moved}; tried again at {st.retry_at:%Y-%m-%d %H:%M} UTC"
        try:
            await health.open_incident(self.store.engine, self.settings, ACCOUNT_DOWN, f"Telegram account {name}",
                                       detail)
        except Exception as exc2:  # the failover itself must go on
            event(log, logging.WARNING, "could not record the incident", error=str(exc2))

    async def _up(self, name: str) -> None:
        """An account taken out works again: back in the plan (its channels return), incident closed."""
        st = self.status[name]
        if st.state == ACTIVE:
            return
        was = st.state
        st.state, st.reason, st.retry_at, st.strikes = ACTIVE, None, None, 0
        await registry.set_state(self.store.engine, name, ACTIVE)
        event(log, logging.INFO, "account back", account=name, was=was)
        mine = self.joined_channels(name)
        if mine:
            # a channel only this account reads (private) was marked unavailable while it was out: read it now,
            # not at the unavailable retry hours later
            async with self.store.sessions.begin() as s:
                await s.execute(update(m.Channel).where(m.Channel.id.in_(mine[:900]), m.Channel.status == "unavailable")
                                .values(not_before=None))
        try:
            await health.close_incidents(self.store.engine, ACCOUNT_DOWN, subjects=[f"Telegram account {name}"])
        except Exception as exc:
            event(log, logging.WARNING, "could not close the incident", error=str(exc))

    # ------------------------------------------------------------------ the plan

    def _need(self, cid: int, names: Collection[str]) -> ChannelNeed:
        per = self.known.get(cid, {})
        return ChannelNeed(
            id=cid, interval=self.intervals.get(cid, float(self.settings.schedule.interval)),
            joined=frozenset(n for n in names if per.get(n) is not None and per[n].joined),
            readable=frozenset(n for n in names if per.get(n) is not None and not per[n].joined
                               and per[n].readable),
            unreadable=frozenset(n for n in names if per.get(n) is not None and per[n].readable is False))

    def _replan(self) -> None:
        """The plan over the usable accounts, for every channel polled lately (not only this batch: the budget
        is a whole cycle's)."""
        mono = self.clock.monotonic()
        for cid in [c for c, t in self.last_seen.items() if t < mono - PLAN_KEEP]:
            del self.last_seen[cid]
        names = [n for n in self.jobs if self.usable(n)]
        slots = [AccountSlot(n, float(account_rate(self.settings, n))) for n in names]
        plan = assign([self._need(cid, names) for cid in self.last_seen], slots)
        self.plan = dict(plan.by_channel)

    # ------------------------------------------------------------------ poll

    async def _channel_rows(self) -> ChannelRows:
        return ChannelRows.of(await self.store.channels())

    async def _sync_if_due(self, job: AccountJobs, rows: ChannelRows) -> None:
        if job.synced_at is not None and job.synced_at > self.clock.monotonic() - DIALOG_SYNC_EVERY:
            return
        by_tg = {tg: r.id for tg, r in rows.by_id.items()}
        by_name = {n: r.id for n, r in rows.by_name.items()}
        try:
            await job.sync_dialogs(by_tg, by_name)
        except (SessionDead, TelegramUnreachable):
            raise
        except Exception as exc:  # a failed sync only means "not learned now": polling goes on
            job.synced_at = self.clock.monotonic()
            event(log, logging.WARNING, "dialogs not read", account=job.account, error=f"{type(exc).__name__}: {exc}")

    async def _probe_returning(self) -> None:
        """Accounts out whose time to be tried again has come: connect (one request for a dead or banned one, whose
        client is made afresh from its session) before the plan is made, so that a returning account gets its
        channels in this very cycle — and a channel only it reads, marked unavailable meanwhile, at once."""
        due = [n for n, st in self.status.items() if st.state != ACTIVE and self.usable(n)]

        async def one(name: str) -> BaseException | None:
            job = self.jobs[name]
            try:
                async with job.lock:
                    await job._open()
            except (SessionDead, TelegramUnreachable) as exc:
                return exc
            except NETWORK_ERRORS as exc:
                return TelegramUnreachable(network_reason(exc))
            except errors.RPCError as exc:
                return SessionDead(f"Telegram refused the connection: {exc.message}")
            return None

        for name, err in zip(due, await asyncio.gather(*(one(n) for n in due)), strict=True):
            if err is None:
                await self._up(name)
            else:
                await self._down(name, err, 0)

    async def _sync_all(self, rows: ChannelRows) -> bool:
        """Read the dialogs of every usable account whose sync is due (all at once, each under its lock), so that
        the plan knows what each has joined before it is made. True when any was read."""
        due = [j for n, j in self.jobs.items() if self.usable(n) and (
            j.synced_at is None or j.synced_at <= self.clock.monotonic() - DIALOG_SYNC_EVERY)]

        async def one(job: AccountJobs) -> BaseException | None:
            try:
                async with job.lock:
                    await self._sync_if_due(job, rows)
            except (SessionDead, TelegramUnreachable) as exc:
                return exc
            except NETWORK_ERRORS as exc:
                return TelegramUnreachable(network_reason(exc))
            return None

        for job, err in zip(due, await asyncio.gather(*(one(j) for j in due)), strict=True):
            if err is not None:
                await self._down(job.account, err, 0)
            else:
                await self._up(job.account)
        return bool(due)

    async def _ensure_rows(self, channels: Sequence[ChannelConfig], rows: ChannelRows) -> ChannelRows:
        """A row for every channel (the service registers them; ``run --once`` and ``backfill`` may not have):
        the plan, the knowledge and the cursors are per row."""
        missing = [c for c in channels if rows.find(c) is None]
        for c in missing:
            try:
                await self.store.upsert_channel(username=c.username, tg_id=c.id, source="telethon")
            except ValueError as exc:
                event(log, logging.WARNING, "channel not registered", channel=c.key, error=str(exc))
        return await self._channel_rows() if missing else rows

    async def _run_account(self, name: str, channels: list[ChannelConfig], rows: ChannelRows) -> _Outcome:
        out = _Outcome(name, channels)
        job = self.jobs[name]
        t0 = time.monotonic()
        try:
            async with job.lock:
                await self._sync_if_due(job, rows)
                out.reports = await job.poll(channels)
        except (SessionDead, TelegramUnreachable) as exc:
            out.error = exc
        except NETWORK_ERRORS as exc:
            out.error = TelegramUnreachable(network_reason(exc))
        out.took = time.monotonic() - t0
        return out

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport]:
        """Poll ``channels``, each with the account the plan gives it, every account at the same time; an
        account that fails hands its channels to the others within this call (see the module docstring)."""
        await self._load()
        await self._probe_returning()
        rows = await self._ensure_rows(channels, await self._channel_rows())
        if await self._sync_all(rows):
            rows = await self._channel_rows()  # a sync may have told the ids of channels known by name only
        reports: dict[str, PollReport] = {c.key: PollReport(channel=c.key) for c in channels}
        rid: dict[str, int] = {}
        mono = self.clock.monotonic()
        for c in channels:
            row = rows.find(c)
            if row is not None:
                rid[c.key] = row.id
                self.last_seen[row.id] = mono
                self.intervals[row.id] = float(self.settings.channel_interval(c))
        pending = list(channels)
        polled_by: dict[int, str] = {}
        down_at: dict[str, float] = {}  # account -> when it was taken out in this call
        moved = 0
        for _round in range(len(self.jobs) + 1):
            if not pending:
                break
            self._replan()
            names = [n for n in self.jobs if self.usable(n)]
            groups: dict[str, list[ChannelConfig]] = {}
            for c in pending:
                acc = self.plan.get(rid[c.key]) if c.key in rid else (names[0] if names else None)
                if acc is None:
                    continue  # no usable account: reported below
                groups.setdefault(acc, []).append(c)
            if not groups:
                break  # no usable account: the pending channels are reported below
            outcomes = await asyncio.gather(*(self._run_account(a, cs, rows) for a, cs in groups.items()))
            pending = []
            for o in outcomes:
                if o.error is not None:
                    await self._down(o.account, o.error, len(o.channels))
                    down_at.setdefault(o.account, time.monotonic())
                    moved += len(o.channels)
                    pending.extend(o.channels)  # polled again by the others, from their stored cursors
                    continue
                await self._up(o.account)
                assert o.reports is not None
                for c, r in zip(o.channels, o.reports, strict=True):
                    cid = rid.get(c.key)
                    if cid is not None and r.error and r.error.startswith(f"account {o.account} cannot read it"):
                        if any(self.usable(n) and self._need(cid, [n]).rank(n) > 0 for n in self.jobs):
                            pending.append(c)  # another account of ours may read it: now
                            reports[c.key] = r
                            continue
                    reports[c.key] = r
                    if cid is not None:
                        polled_by[cid] = o.account
                        if not r.error and not r.unavailable and r.deferred_until is None:
                            per = self.known.get(cid, {}).get(o.account)
                            if per is None or per.readable is not True:
                                self.learned(o.account, cid, Fact(readable=True))
        for acc, t in down_at.items():
            self.failovers.append(Failover(acc, self.status[acc].state, self.status[acc].reason or "",
                                           moved, time.monotonic() - t))
        if pending:
            self._no_account_left(pending, reports)
        await self._flush(polled_by)
        return [reports[c.key] for c in channels]

    def _no_account_left(self, left: list[ChannelConfig], reports: dict[str, PollReport]) -> None:
        """Channels no account could poll now. Every account dead or banned: the Telethon jobs stop
        (SessionDead, as with one account); every one unreachable: Telegram cannot be reached; else they wait
        for the first limited account to come back."""
        states = {n: st for n, st in self.status.items()}
        if states and all(st.state in (DEAD, BANNED) and not self.usable(n) for n, st in states.items()):
            raise SessionDead("every Telegram account is dead or banned: "
                              + "; ".join(f"{n}: {st.reason}" for n, st in states.items()))
        if states and all(st.state == UNREACHABLE and not self.usable(n) for n, st in states.items()):
            raise TelegramUnreachable(next(iter(states.values())).reason or "every account unreachable")
        waits = [st.retry_at for n, st in states.items() if st.retry_at is not None and not self.usable(n)]
        until = min(waits) if waits else None
        for c in left:
            r = reports[c.key]
            if r.error is None:
                r.error = "no Telegram account can poll it now (see tgmonitor accounts)"
            if until is not None and r.deferred_until is None:
                r.deferred_until = until

    async def _flush(self, polled_by: Mapping[int, str]) -> None:
        """Write what the accounts learned, their requests by minute and which account reads each channel."""
        facts, self._pending.facts = self._pending.facts, {}
        try:
            for acc, per in facts.items():
                await registry.learn(self.store.engine, acc, per)
            counts = {n: dict(j.minutes) for n, j in self.jobs.items() if j.minutes}
            for j in self.jobs.values():
                j.minutes.clear()
            await registry.count_requests(self.store.engine, counts)
            changed = {cid: acc for cid, acc in polled_by.items() if self.written.get(cid) != acc}
            if changed:
                await registry.set_channel_accounts(self.store.engine, changed)
                self.written.update(changed)
        except Exception as exc:  # bookkeeping: the posts are stored already
            event(log, logging.WARNING, "account bookkeeping not written", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ backfill

    async def backfill(self, channel: ChannelConfig, *, since: datetime | None = None, limit: int | None = None,
                       alert: bool = False, progress: Progress | None = None) -> PollReport:
        """Backfill with the account the plan gives the channel; another one takes over if it fails or is refused
        the channel (the walk continues from the stored low-water mark)."""
        await self._load()
        rows = await self._ensure_rows([channel], await self._channel_rows())
        if await self._sync_all(rows):
            rows = await self._channel_rows()
        row = rows.find(channel)
        if row is not None:
            self.last_seen[row.id] = self.clock.monotonic()
            self.intervals[row.id] = float(self.settings.channel_interval(channel))
        rep = PollReport(channel=channel.key)
        for _ in range(len(self.jobs)):
            self._replan()
            names = [n for n in self.jobs if self.usable(n)]
            acc = self.plan.get(row.id) if row is not None else (names[0] if names else None)
            if acc is None:
                break
            job = self.jobs[acc]
            try:
                async with job.lock:
                    await self._sync_if_due(job, rows)
                    rep = await job.backfill(channel, since=since, limit=limit, alert=alert, progress=progress)
            except (SessionDead, TelegramUnreachable) as exc:
                await self._down(acc, exc, 1)
                continue
            await self._up(acc)
            refused = row is not None and (self.known.get(row.id, {}).get(acc) or Known()).readable is False
            if refused and row is not None and any(self.usable(n) and self._need(row.id, [n]).rank(n) > 0
                                                   for n in self.jobs):
                continue  # another account of ours may read it
            await self._flush({row.id: acc} if row is not None and not rep.error else {})
            return rep
        await self._flush({})
        if not any(self.usable(n) for n in self.jobs):
            self._no_account_left([channel], {channel.key: rep})
        return rep

    async def aclose(self) -> None:
        """Disconnect every account (never raises)."""
        await asyncio.gather(*(j.aclose() for j in self.jobs.values()), return_exceptions=True)


# --------------------------------------------------------------------------- the session check at start


async def check_sessions(rt: Runtime, *, on_unreachable: Callable[[str], Awaitable[None]] | None = None
                         ) -> bool | None:
    """Ask Telegram whether each account's session is logged in (one client at a time, disconnected again
    before the jobs open their own). Records each account's state; a dead one gets its incident. True when at
    least one account is authorised, False when none is (and none was unreachable), None when none is but
    some could not be reached (the jobs retry with backoff)."""
    s = rt.settings
    any_ok, unreachable = False, False
    users: dict[int, str] = {}
    for acc in s.telegram.accounts:
        try:
            client = make_client(account_settings(s, acc.name))
        except ClientSetupError as exc:
            await _dead_at_start(rt, acc.name, str(exc))
            continue
        try:
            ok, user_id = await _authorised(client)
        except NETWORK_ERRORS as exc:
            unreachable = True
            if on_unreachable is not None:
                await on_unreachable(str(TelegramUnreachable(network_reason(exc))))
            continue
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), 5.0)
            except Exception:  # a half-open connection on the way out is not worth a traceback
                pass
        if not ok:
            await _dead_at_start(rt, acc.name, "the session is not authorised: run "
                                 f"`tgmonitor login --account {acc.name}`")
            continue
        any_ok = True
        rows = await registry.accounts(rt.engine)
        prev = rows.get(acc.name)
        if prev is None or prev.state in (DEAD, BANNED):
            await registry.set_state(rt.engine, acc.name, ACTIVE, user_id=user_id)
            await health.close_incidents(rt.engine, ACCOUNT_DOWN, subjects=[f"Telegram account {acc.name}"])
        elif user_id is not None:
            await registry.set_state(rt.engine, acc.name, prev.state, prev.state_reason, retry_at=prev.retry_at,
                                     user_id=user_id)
        if user_id is not None:
            if user_id in users:
                event(log, logging.WARNING, "two accounts are the same Telegram user: they share its limits and "
                      "its 500-channel cap", accounts=f"{users[user_id]}, {acc.name}")
            users[user_id] = acc.name
    if any_ok:
        return True
    return None if unreachable else False


async def _authorised(client: TelegramClient) -> tuple[bool, int | None]:
    try:
        if not client.is_connected():
            await client.connect()
        if not await client.is_user_authorized():
            return False, None
        me = await client.get_me(input_peer=True)
        return True, getattr(me, "user_id", None)
    except errors.RPCError as exc:
        if is_session_dead(exc):
            return False, None
        raise


async def _dead_at_start(rt: Runtime, name: str, reason: str) -> None:
    await registry.set_state(rt.engine, name, DEAD, reason, retry_at=None)
    event(log, logging.ERROR, "account cannot be used", account=name, reason=reason)
    await health.open_incident(rt.engine, rt.settings, ACCOUNT_DOWN, f"Telegram account {name}", f"dead: {reason}")
