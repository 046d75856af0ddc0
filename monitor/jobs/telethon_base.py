"""The Telethon jobs' foundation: the connected source, the process-wide request budget and flood waits
(remembered in ``flood_waits`` for every process), channel resolution (once per channel) and the rows that
remember it, unavailable channels, incidents, and the assembly of albums cut by a page or a poll.

:class:`TelethonBase` holds the state; polling (:mod:`monitor.jobs.telethon`), re-reads
(:mod:`monitor.jobs.telethon_rereads`) and backfill (:mod:`monitor.jobs.telethon_backfill`) build on it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import select
from telethon import errors

from monitor import health
from monitor import models as m
from monitor.budget import Deferred, RequestBudget
from monitor.config import ChannelConfig, Settings
from monitor.ingest import Arrival
from monitor.jobs.base import PollReport, SessionDead
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.telethon import (
    LOGIN_MESSAGE,
    NETWORK_ERRORS,
    UNAVAILABLE_ERRORS,
    ChannelInfo,
    ClientSetupError,
    NotAChannel,
    TelegramUnreachable,
    TelethonSource,
    assemble,
    enable_updates,
    is_session_dead,
    make_client,
    network_reason,
)

if TYPE_CHECKING:
    from telethon import TelegramClient

    from monitor.runtime import Runtime
    from monitor.store import BatchResult

# One logger for the Telethon jobs, whichever module the code is in: log lines read "jobs.telethon: …" as before.
log = logging.getLogger("monitor.jobs.telethon")
T = TypeVar("T")

#: An unavailable channel (private, banned, gone) is tried again this long after.
UNAVAILABLE_RETRY = timedelta(hours=6)

HISTORY, RESOLVE, DIALOGS, BY_IDS = "GetHistoryRequest", "ResolveUsernameRequest", "GetPeerDialogsRequest", \
    "GetMessagesRequest"


# --------------------------------------------------------------------------- clock and budget


class SystemClock:
    """Wall time for the database, monotonic time for the budget; tests pass a fake with both."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def build_budget(requests_per_minute: float, clock: Callable[[], float] = time.monotonic) -> RequestBudget:
    """The Telegram budget: ``requests_per_minute`` shared, with tighter budgets for the touchy types."""
    rpm = float(requests_per_minute)
    per_type = {
        RESOLVE: max(1.0, rpm / 4),  # accounts have been frozen for 15 h after ~160 quick resolves
        HISTORY: rpm,
        DIALOGS: rpm,
        BY_IDS: max(1.0, rpm / 2),
        "GetChannelsRequest": max(1.0, rpm / 4),
        "GetDialogsRequest": max(1.0, rpm / 4),
    }
    return RequestBudget(rpm, per_type=per_type, clock=clock)


_BUDGET: RequestBudget | None = None


def telegram_budget(settings: Settings) -> RequestBudget:
    """The process-wide budget every poll, re-read and backfill of this process shares."""
    global _BUDGET
    if _BUDGET is None:
        _BUDGET = build_budget(settings.schedule.requests_per_minute)
    return _BUDGET


# --------------------------------------------------------------------------- helpers


@dataclass(slots=True)
class ChannelRows:
    """Stored channels indexed the ways a config entry can name them (one query per cycle)."""

    by_ref: dict[str, m.Channel] = field(default_factory=dict)
    by_id: dict[int, m.Channel] = field(default_factory=dict)
    by_name: dict[str, m.Channel] = field(default_factory=dict)

    @classmethod
    def of(cls, channels: Iterable[m.Channel]) -> ChannelRows:
        """The stored ``channels`` indexed by config key, Telegram id and username."""
        rows = cls()
        for r in channels:
            if r.config_ref:
                rows.by_ref[r.config_ref] = r
            if r.tg_id is not None:
                rows.by_id[r.tg_id] = r
            if r.username:
                rows.by_name[r.username] = r
        return rows

    def find(self, cfg: ChannelConfig) -> m.Channel | None:
        row = self.by_ref.get(cfg.key)
        if row is None and cfg.id is not None:
            row = self.by_id.get(cfg.id)
        if row is None and cfg.username:
            row = self.by_name.get(cfg.username)
        return row


@dataclass(slots=True)
class StoredAlbum:
    message_id: int
    members: tuple[int, ...]
    text: str


class Unavailable(Exception):
    """This channel cannot be read; ``reason`` says why in words people understand."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unavailable_reason(exc: BaseException) -> str:
    """Why Telegram will not let us read a channel, in words people understand."""
    if isinstance(exc, errors.ChannelPrivateError):
        return "private, or the account was banned from it (CHANNEL_PRIVATE)"
    if isinstance(exc, errors.UsernameNotOccupiedError):
        return "no channel has this username (USERNAME_NOT_OCCUPIED)"
    if isinstance(exc, errors.UsernameInvalidError):
        return "not a valid username (USERNAME_INVALID)"
    if isinstance(exc, errors.ChannelInvalidError):
        return "Telegram does not accept this channel (CHANNEL_INVALID)"
    if isinstance(exc, errors.RPCError):
        return f"Telegram refused it ({exc.message})"
    return str(exc)


class PushHooks(Protocol):
    """What the Telethon jobs ask of the push receiver (:mod:`monitor.jobs.push`) when push is on."""

    def attach(self, client: TelegramClient) -> None:
        """A client is about to connect: listen to its updates."""

    def missed(self, channel_id: int, posts: Sequence[Post]) -> frozenset[int]:
        """Of the posts a poll is about to store, the ids push should have delivered but did not."""

    def polled(self, channel_id: int, missed: int) -> None:
        """A poll of the channel finished; ``missed`` posts it stored were ones push had missed."""


# --------------------------------------------------------------------------- the shared state


class TelethonBase:
    """What every Telethon job shares: the client, the budget, one request at a time, channels, incidents."""

    def __init__(
        self,
        rt: Runtime,
        *,
        client: TelegramClient | None = None,
        budget: RequestBudget | None = None,
        clock: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backfill_max_wait: float = 300.0,
    ) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.store = rt.store
        self.clock = clock or SystemClock()
        self.budget = budget or telegram_budget(rt.settings)
        self._client = client
        self._sleep = sleep
        self.backfill_max_wait = backfill_max_wait
        self.src: TelethonSource | None = None
        self.requests = 0  # requests this instance sent (tests and benchmarks read it)
        self._opened = False
        self._floods_loaded = False
        #: push updates (issue 12): the receiver, when the service turned push on before the first connect
        self.push: PushHooks | None = None
        #: channel id -> (newest message id known to exist, monotonic time learnt): the push receiver's
        #: GetPeerDialogs probe fills it, pushes raise it; a poll within TOPS_FRESH of it asks no dialogs
        self.tops_known: dict[int, tuple[int, float]] = {}

    # ------------------------------------------------------------------ session

    async def _open(self) -> TelethonSource:
        """Build and connect the client once; SessionDead when it is not usable at all."""
        if self.src is None:
            try:
                client = (self._client if self._client is not None
                          else make_client(self.settings, updates=self.push is not None))
            except ClientSetupError as exc:
                raise SessionDead(str(exc)) from None
            if self.push is not None:
                enable_updates(client)
                self.push.attach(client)  # before the first connect: its catch-up is pushed to us too
            self.src = TelethonSource(client)
        if not self._floods_loaded:
            await self._load_flood_waits()
            self._floods_loaded = True
        if not self._opened:
            try:
                await self.src.open()  # TelegramUnreachable when the network fails
            except errors.RPCError as exc:
                if is_session_dead(exc):
                    raise SessionDead(LOGIN_MESSAGE) from None
                raise
            self._opened = True
        return self.src

    async def aclose(self) -> None:
        """Disconnect the client (never raises: shutting down must not fail)."""
        if self.src is not None:
            try:
                await self.src.close()
            except Exception as exc:  # a half-open connection on the way out is not worth a traceback
                event(log, logging.DEBUG, "telethon disconnect failed", error=type(exc).__name__)
        self._opened = False

    async def _load_flood_waits(self) -> None:
        """Flood waits another process of ours recorded are still Telegram's: honour them here too."""
        now = self.clock.now()
        async with self.store.sessions() as s:
            rows = (await s.execute(select(m.FloodWait.request_type, m.FloodWait.until)
                                    .where(m.FloodWait.until > now))).all()
        for kind, until in rows:
            self.budget.defer(kind, (until - now).total_seconds())

    # ------------------------------------------------------------------ one request

    async def _call(self, kind: str, fn: Callable[[], Awaitable[T]], *, wait_floods: bool = False) -> T:
        """Send one request of ``kind`` within the budget.

        A flood wait (ours remembered, or a fresh FloodWaitError) raises :class:`Deferred` at once — unless
        ``wait_floods`` (backfill) and it is short enough to wait out asynchronously. Session-dead errors
        become :class:`SessionDead`."""
        while True:
            blocked = self.budget.blocked_for(kind)
            if blocked > 0:
                if wait_floods and blocked <= self.backfill_max_wait:
                    event(log, logging.INFO, "waiting out a flood wait", request=kind, seconds=round(blocked))
                    await self._sleep(blocked + 0.5)
                    continue
                raise Deferred(kind, self.budget.clock() + blocked, blocked)
            await self.budget.acquire(kind)
            self.requests += 1
            try:
                return await fn()
            except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
                await self._flood(kind, float(exc.seconds))
                if not wait_floods or exc.seconds > self.backfill_max_wait:
                    raise Deferred(kind, self.budget.clock() + exc.seconds, float(exc.seconds)) from None
            except errors.RPCError as exc:
                if is_session_dead(exc):
                    raise SessionDead(LOGIN_MESSAGE) from None
                raise
            except NETWORK_ERRORS as exc:
                # The connection broke (IncompleteReadError is an EOFError) or cannot be made: the whole
                # source is unreachable, not this request; the next open connects afresh.
                await self._drop_connection()
                raise TelegramUnreachable(network_reason(exc)) from None

    async def _drop_connection(self) -> None:
        self._opened = False
        if self.src is not None:
            await self.src.close_quietly()

    async def _flood(self, kind: str, seconds: float) -> None:
        """Remember a flood wait: in the budget (this process) and in ``flood_waits`` (every process)."""
        self.budget.defer(kind, seconds)
        until = self.clock.now() + timedelta(seconds=seconds)
        async with self.store.sessions.begin() as s:
            s.add(m.FloodWait(request_type=kind, seconds=int(seconds), until=until, recorded_at=self.clock.now()))
        event(log, logging.WARNING, "flood wait", request=kind, seconds=int(seconds), until=until.isoformat())

    def _jittered(self, seconds: float) -> datetime:
        """The "not before" time for deferred work: the wait plus a little jitter, so that deferred channels
        do not all come back in the same second."""
        extra = random.uniform(0, min(seconds * self.settings.schedule.jitter, 60.0))
        return self.clock.now() + timedelta(seconds=seconds + extra)

    # ------------------------------------------------------------------ channels

    async def _rows(self) -> ChannelRows:
        return ChannelRows.of(await self.store.channels())

    async def _resolve(self, cfg: ChannelConfig, *, wait_floods: bool = False) -> ChannelInfo:
        """Ask Telegram who ``cfg`` is (once per channel). Raises Unavailable, Deferred or SessionDead."""
        src = await self._open()
        try:
            if cfg.username:
                return await self._call(RESOLVE, lambda: src.resolve_username(cfg.username or ""),
                                        wait_floods=wait_floods)
            assert cfg.id is not None
            cid = cfg.id
            info = src.cached(cid)
            if info is None:
                info = await self._call("GetChannelsRequest", lambda: src.channel_by_id(cid), wait_floods=wait_floods)
            if info is None:
                info = await self._call("GetDialogsRequest", lambda: src.find_in_dialogs(cid), wait_floods=wait_floods)
            if info is None:
                raise Unavailable("no channel with this id among the account's channels (join it, or configure "
                                   "its username)")
            return info
        except UNAVAILABLE_ERRORS as exc:
            raise Unavailable(unavailable_reason(exc)) from None
        except NotAChannel as exc:
            raise Unavailable(f"{exc} (a user, bot or group)") from None

    async def _adopt(self, cfg: ChannelConfig, row: m.Channel | None, info: ChannelInfo) -> m.Channel:
        """Store what resolution learned; the row is attached to this config entry from now on."""
        if row is not None and row.tg_id is None and info.id is not None:
            # an unavailable-by-name row may now turn out to be a channel we already store under its id
            other = await self.store.find_channel(tg_id=info.id)
            if other is not None and other.id != row.id:
                await self.store.update_channel(row.id, config_ref=None)
                row = other
        stored = await self.store.upsert_channel(username=info.username, tg_id=info.id, title=info.title,
                                                 access_hash=info.access_hash, source="telethon")
        values: dict[str, object] = {"config_ref": cfg.key}
        if stored.status != "active":
            values.update(status="active", status_reason=None, status_changed_at=self.clock.now(), not_before=None)
            await self._close_incident("channel_unavailable", cfg.key)
        await self.store.update_channel(stored.id, **values)
        return await self.store.get_channel(stored.id)

    async def _mark_unavailable(self, cfg: ChannelConfig, row: m.Channel | None, reason: str,
                                rep: PollReport) -> None:
        """Unavailable with its reason, retried rarely; reported (and logged) once, when it happens."""
        if row is None:
            row = await self.store.upsert_channel(username=cfg.username, tg_id=cfg.id, source="telethon")
        now = self.clock.now()
        fresh = row.status != "unavailable" or row.status_reason != reason
        await self.store.update_channel(row.id, config_ref=cfg.key, status="unavailable", status_reason=reason,
                                        status_changed_at=now if fresh else row.status_changed_at,
                                        last_error=reason, not_before=now + UNAVAILABLE_RETRY)
        rep.unavailable = True
        rep.deferred_until = now + UNAVAILABLE_RETRY
        if fresh:
            rep.error = f"unavailable: {reason}"
            event(log, logging.WARNING, "channel unavailable", channel=cfg.key, reason=reason)
        await self._open_incident("channel_unavailable", cfg.key, reason)

    async def _follow(self, row: m.Channel, info: ChannelInfo | None) -> m.Channel:
        """Telegram describes the channel differently (renamed, retitled): keep the same row, update it."""
        if info is None or info.id != row.tg_id:
            return row
        if info.username == row.username and (info.title is None or info.title == row.title):
            return row
        if info.username is None and row.username is not None:
            await self.store.update_channel(row.id, username=None)
        updated = await self.store.upsert_channel(username=info.username, tg_id=row.tg_id, title=info.title)
        if info.username != row.username:
            event(log, logging.INFO, "channel renamed", channel_id=row.tg_id, old=row.username or "",
                  new=info.username or "")
        return await self.store.get_channel(updated.id)

    # ------------------------------------------------------------------ incidents

    async def _open_incident(self, kind: str, subject: str, detail: str) -> bool:
        """One open incident per (kind, subject), opened through :func:`monitor.health.open_incident` so that
        its operator alert is queued in the same transaction (an incident row written here without it was
        later skipped by the health check as "already open": the operator never heard). True when opened now."""
        return await health.open_incident(self.store.engine, self.rt.settings, kind, subject, detail)

    async def _close_incident(self, kind: str, subject: str) -> None:
        """The problem went away: close its open incident (a later recurrence alerts again)."""
        await health.close_incidents(self.store.engine, kind, subjects=[subject])

    # ------------------------------------------------------------------ how posts arrived (issue 12)

    def _arrival(self, row: m.Channel, posts: Sequence[Post], how: str = "poll", *,
                 reconciling: bool = True) -> Arrival:
        """How this batch reached us; a poll of a channel push covers flags the posts push missed."""
        missed = frozenset[int]()
        if self.push is not None and reconciling and how == "poll" and row.tg_id is not None:
            missed = self.push.missed(row.tg_id, posts)
        return Arrival(how, seen_at=self.clock.now(), push_missed=missed)

    @staticmethod
    def _missed_stored(arrival: Arrival, res: BatchResult) -> int:
        """How many posts this batch newly stored that push had missed (the others were stored already)."""
        if not arrival.push_missed:
            return 0
        return sum(1 for sp in res.saved if sp.is_new and sp.post.message_id in arrival.push_missed)

    # ------------------------------------------------------------------ posts

    async def _stored_albums(self, channel_id: int, album_ids: Sequence[int]) -> dict[int, StoredAlbum]:
        async with self.store.sessions() as s:
            rows = (await s.execute(select(m.Post.album_id, m.Post.message_id, m.Post.member_ids, m.Post.text)
                                    .where(m.Post.channel_id == channel_id, m.Post.album_id.in_(list(album_ids)))
                                    )).all()
        return {a: StoredAlbum(mid, tuple(members or (mid,)), text or "") for a, mid, members, text in rows}

    async def _posts(self, row: m.Channel, msgs: Sequence[Any]) -> list[Post]:
        """Posts of a page; an album whose other part is stored already (cut by a page or a poll) is completed
        under the stored post's id instead of becoming a second post."""
        posts = assemble(msgs)
        album_ids = [p.album_id for p in posts if p.album_id]
        if not album_ids:
            return posts
        stored = await self._stored_albums(row.id, album_ids)
        out: list[Post] = []
        for p in posts:
            s = stored.get(p.album_id) if p.album_id else None
            if s is not None:
                members = tuple(sorted(set(p.member_ids) | set(s.members)))
                if set(p.member_ids) >= set(s.members):
                    text = p.text  # the whole album is here: it is authoritative
                elif not p.text or p.text in s.text:
                    text = s.text
                elif not s.text:
                    text = p.text
                else:
                    text = f"{s.text}\n\n{p.text}"
                p = replace(p, message_id=s.message_id, member_ids=members, text=text)
            out.append(p)
        return out

    # ------------------------------------------------------------------ outcomes shared by poll and backfill

    async def _defer(self, cfg: ChannelConfig, row: m.Channel | None, rep: PollReport, d: Deferred) -> None:
        """The work needs a request type that is in a flood wait: come back after it, lose nothing."""
        until = self._jittered(d.seconds)
        rep.deferred_until = until
        if row is not None:
            await self.store.update_channel(row.id, not_before=until)
        event(log, logging.INFO, "deferred by a flood wait", channel=cfg.key, request=d.kind,
              until=until.isoformat())

    async def _failed(self, cfg: ChannelConfig, row: m.Channel | None, rep: PollReport, exc: Exception) -> None:
        """Any other failure: reported, stored as the channel's last error, the other channels go on."""
        if isinstance(exc, errors.RPCError):
            msg = f"Telegram error {exc.message}"
        elif isinstance(exc, (OSError, ConnectionError, TimeoutError)):
            msg = f"network: {type(exc).__name__}: {exc}"
        else:
            msg = f"{type(exc).__name__}: {exc}"
            log.debug("poll failed", exc_info=exc)
        rep.error = msg
        if row is not None:
            await self.store.update_channel(row.id, last_error=msg)

