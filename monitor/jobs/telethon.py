"""Telethon jobs: resolve channels once, poll them cheaply, re-read recent posts, backfill resumably.

How a cycle stays gentle with the account:
* a channel is resolved once (``contacts.ResolveUsername`` is the call Telegram punishes hardest); its id,
  access hash, title and username live in ``channels`` and later polls build the input peer from them;
* one ``messages.GetPeerDialogs`` per 100 channels tells the newest message id of every joined channel, so a
  quiet joined channel costs no request of its own and a quiet channel not joined costs one GetHistory;
* every request takes a token from the process-wide :class:`~monitor.budget.RequestBudget`; a flood wait
  refuses that request type until its "not before" time, the channels whose work needs it are deferred
  (``channels.not_before``) and the wait is recorded in ``flood_waits`` — a poll never sleeps it out.

Every page of messages is stored with its matches, outbox rows and the channel's new cursor (or backfill
low-water mark) in one transaction through ``rt.ingestor``: a crash repeats nothing and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update
from telethon import errors

from monitor import models as m
from monitor.budget import Deferred, RequestBudget
from monitor.config import ChannelConfig, Settings
from monitor.ingest import AlertRule
from monitor.jobs.base import PollReport, Progress, SessionDead
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.telethon import (
    ALBUM_SETTLE,
    LOGIN_MESSAGE,
    NETWORK_ERRORS,
    PAGE,
    UNAVAILABLE_ERRORS,
    ChannelInfo,
    ClientSetupError,
    NotAChannel,
    TelegramUnreachable,
    TelethonSource,
    album_post,
    assemble,
    is_session_dead,
    leading_group,
    make_client,
    network_reason,
    newest_date,
    to_post,
    trailing_group,
)

if TYPE_CHECKING:
    from telethon import TelegramClient

    from monitor.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

#: An unavailable channel (private, banned, gone) is tried again this long after.
UNAVAILABLE_RETRY = timedelta(hours=6)
#: At most this many message ids are re-read per channel (one channels.GetMessages request).
REREAD_MAX = 100
#: Channels per messages.GetPeerDialogs request.
DIALOG_BATCH = 100
#: The server-count comparison runs on every this-many-th re-read: a gap is rare and slow to matter, while
#: a request per re-read doubled the cost of a cycle in which every channel had posted recently.
COUNT_CHECK_EVERY = 10

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
class _Rows:
    """Stored channels indexed the ways a config entry can name them (one query per cycle)."""

    by_ref: dict[str, m.Channel] = field(default_factory=dict)
    by_id: dict[int, m.Channel] = field(default_factory=dict)
    by_name: dict[str, m.Channel] = field(default_factory=dict)

    def find(self, cfg: ChannelConfig) -> m.Channel | None:
        row = self.by_ref.get(cfg.key)
        if row is None and cfg.id is not None:
            row = self.by_id.get(cfg.id)
        if row is None and cfg.username:
            row = self.by_name.get(cfg.username)
        return row


@dataclass(slots=True)
class _StoredAlbum:
    message_id: int
    members: tuple[int, ...]
    text: str


class _Unavailable(Exception):
    """This channel cannot be read; ``reason`` says why in words people understand."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: BaseException) -> str:
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


# --------------------------------------------------------------------------- the jobs


class TelethonJobs:
    """:class:`~monitor.jobs.SourceJobs` for Telegram through Telethon."""

    source = "telethon"

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

    # ------------------------------------------------------------------ session

    async def _open(self) -> TelethonSource:
        """Build and connect the client once; SessionDead when it is not usable at all."""
        if self.src is None:
            try:
                client = self._client if self._client is not None else make_client(self.settings)
            except ClientSetupError as exc:
                raise SessionDead(str(exc)) from None
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

    async def _rows(self) -> _Rows:
        rows = _Rows()
        for r in await self.store.channels():
            if r.config_ref:
                rows.by_ref[r.config_ref] = r
            if r.tg_id is not None:
                rows.by_id[r.tg_id] = r
            if r.username:
                rows.by_name[r.username] = r
        return rows

    async def _resolve(self, cfg: ChannelConfig, *, wait_floods: bool = False) -> ChannelInfo:
        """Ask Telegram who ``cfg`` is (once per channel). Raises _Unavailable, Deferred or SessionDead."""
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
                raise _Unavailable("no channel with this id among the account's channels (join it, or configure "
                                   "its username)")
            return info
        except UNAVAILABLE_ERRORS as exc:
            raise _Unavailable(_reason(exc)) from None
        except NotAChannel as exc:
            raise _Unavailable(f"{exc} (a user, bot or group)") from None

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
        """One open incident per (kind, subject); True when this call opened it."""
        async with self.store.sessions.begin() as s:
            open_ = (await s.execute(select(m.Incident).where(m.Incident.kind == kind, m.Incident.subject == subject,
                                                              m.Incident.closed_at.is_(None)))).scalars().first()
            if open_ is not None:
                open_.detail = detail
                return False
            s.add(m.Incident(kind=kind, subject=subject, detail=detail, opened_at=self.clock.now()))
            return True

    async def _close_incident(self, kind: str, subject: str) -> None:
        async with self.store.sessions.begin() as s:
            await s.execute(update(m.Incident).where(m.Incident.kind == kind, m.Incident.subject == subject,
                                                     m.Incident.closed_at.is_(None))
                            .values(closed_at=self.clock.now()))

    # ------------------------------------------------------------------ posts

    async def _stored_albums(self, channel_id: int, album_ids: Sequence[int]) -> dict[int, _StoredAlbum]:
        async with self.store.sessions() as s:
            rows = (await s.execute(select(m.Post.album_id, m.Post.message_id, m.Post.member_ids, m.Post.text)
                                    .where(m.Post.channel_id == channel_id, m.Post.album_id.in_(list(album_ids)))
                                    )).all()
        return {a: _StoredAlbum(mid, tuple(members or (mid,)), text or "") for a, mid, members, text in rows}

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

    # ------------------------------------------------------------------ poll

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport]:
        """Fetch every message newer than each channel's cursor; see the module docstring for the costs."""
        reports = [PollReport(channel=c.key) for c in channels]
        try:
            src = await self._open()
        except (SessionDead, TelegramUnreachable):
            raise  # the caller decides: stop the Telethon jobs, or retry the connection later
        except errors.RPCError as exc:
            for r in reports:
                r.error = f"Telegram refused the connection: {exc.message}"
            return reports
        now = self.clock.now()
        rows = await self._rows()
        work: list[tuple[ChannelConfig, m.Channel, PollReport]] = []
        for cfg, rep in zip(channels, reports, strict=True):
            row = rows.find(cfg)
            if row is not None and row.not_before is not None and row.not_before > now:
                rep.deferred_until = row.not_before
                rep.unavailable = row.status == "unavailable"
                continue
            if row is None or row.tg_id is None or row.access_hash is None:
                before = self.requests
                try:
                    row = await self._adopt(cfg, row, await self._resolve(cfg))
                except _Unavailable as exc:
                    await self._mark_unavailable(cfg, row, exc.reason, rep)
                    continue
                except Deferred as d:
                    await self._defer(cfg, row, rep, d)
                    continue
                except (SessionDead, TelegramUnreachable):
                    raise
                except Exception as exc:
                    await self._failed(cfg, row, rep, exc)
                    continue
                finally:
                    rep.requests += self.requests - before
            elif row.config_ref != cfg.key:
                await self.store.update_channel(row.id, config_ref=cfg.key)
            work.append((cfg, row, rep))

        tops = await self._dialog_tops(src, work)
        quiet: list[int] = []
        for cfg, row, rep in work:
            before = self.requests
            started = self.clock.now()
            try:
                did = await self._poll_guarded(src, cfg, row, rep, tops.get(row.tg_id or 0))
            except Deferred as d:
                await self._defer(cfg, row, rep, d)
                did = True
            except _Unavailable as exc:
                await self._mark_unavailable(cfg, row, exc.reason, rep)
                did = True
            except (SessionDead, TelegramUnreachable):
                raise  # work stored so far is committed; the cursor makes the retry continue from there
            except Exception as exc:
                await self._failed(cfg, row, rep, exc)
                did = True
            rep.requests += self.requests - before
            if did:
                await self.store.record_run(row.id, "poll", started, posts=rep.new, requests=rep.requests,
                                            error=rep.error)
            if rep.deferred_until is None and rep.error is None:
                quiet.append(row.id)
        if quiet:
            # one statement for every channel polled without trouble (500 quiet channels: one write)
            async with self.store.sessions.begin() as s:
                await s.execute(update(m.Channel).where(m.Channel.id.in_(quiet))
                                .values(polls=m.Channel.polls + 1, last_poll_at=now, last_error=None))
        return reports

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

    async def _dialog_tops(self, src: TelethonSource,
                           work: Sequence[tuple[ChannelConfig, m.Channel, PollReport]]) -> dict[int, int]:
        """Newest message ids of the joined channels, 100 channels a request; failures just mean "unknown"."""
        tops: dict[int, int] = {}
        rows = [row for _, row, _ in work if row.baseline_id is not None]
        for i in range(0, len(rows), DIALOG_BATCH):
            batch = rows[i:i + DIALOG_BATCH]
            peers = [src.peer(r.tg_id or 0, r.access_hash or 0) for r in batch]
            try:
                got, infos = await self._call(DIALOGS, lambda peers=peers: src.dialog_tops(peers))
            except (SessionDead, TelegramUnreachable):
                raise
            except (Deferred, errors.RPCError) as exc:
                # not fatal: these channels are asked with GetHistory instead
                event(log, logging.DEBUG, "GetPeerDialogs failed", error=type(exc).__name__)
                continue
            tops.update(got)
            by_id = {r.tg_id: r for r in batch}
            for info in infos:
                r = by_id.get(info.id)
                if r is not None and (info.username != r.username or (info.title and info.title != r.title)):
                    await self._follow(r, info)
        return tops

    async def _poll_guarded(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                            top: int | None) -> bool:
        """Poll; Telegram's "this channel cannot be read" errors make it unavailable — except a stale access
        hash (CHANNEL_INVALID), which earns one fresh resolution by username first."""
        try:
            return await self._poll_channel(src, cfg, row, rep, top)
        except UNAVAILABLE_ERRORS as exc:
            if not (isinstance(exc, errors.ChannelInvalidError) and cfg.username):
                raise _Unavailable(_reason(exc)) from None
        event(log, logging.INFO, "stored access hash refused; resolving again", channel=cfg.key)
        row = await self._adopt(cfg, row, await self._resolve(cfg))
        try:
            return await self._poll_channel(src, cfg, row, rep, top)
        except UNAVAILABLE_ERRORS as exc:
            raise _Unavailable(_reason(exc)) from None

    async def _poll_channel(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                            top: int | None) -> bool:
        """One channel's poll; False when it was quiet and cost nothing."""
        peer = src.peer(row.tg_id or 0, row.access_hash or 0)
        did = False
        if row.baseline_id is None and not row.cursor:
            await self._first_poll(src, cfg, row, rep, peer)
            did = True
        elif top is None or top > (row.cursor or 0):
            seen_top = await self._fetch_new(src, cfg, row, rep, peer, top)
            if row.baseline_id is None:
                # stored before (a backfill, a crash before the baseline was written): nothing fetched now
                # alerted; the baseline is the newest id this first poll saw
                await self.store.set_baseline(row.id, max(seen_top, row.cursor or 0))
            did = True
        if self._due(row):
            fresh = await self.store.get_channel(row.id)
            await self._reread(src, cfg, fresh, rep, peer)
            if self._count_due(row):
                await self._count_check(src, cfg, await self.store.get_channel(row.id), peer)
            did = True
        if did and row.status != "active":
            await self.store.update_channel(row.id, status="active", status_reason=None,
                                            status_changed_at=self.clock.now())
            await self._close_incident("channel_unavailable", cfg.key)
        return did

    def _due(self, row: m.Channel) -> bool:
        """Re-read (and count check) every ``reread_every`` polls, staggered by channel so that a cycle never
        re-reads every channel at once; never for a channel with no post inside the window."""
        sch = self.settings.schedule
        if sch.reread_hours <= 0 or row.baseline_id is None or row.last_post_at is None:
            return False
        if row.last_post_at < self.clock.now() - timedelta(hours=sch.reread_hours):
            return False
        return (row.polls + 1 + row.id) % sch.reread_every == 0

    def _count_due(self, row: m.Channel) -> bool:
        """On a re-read poll: is it also time to compare the stored count with the server's?"""
        return (row.polls + 1 + row.id) % (self.settings.schedule.reread_every * COUNT_CHECK_EVERY) == 0

    async def _first_poll(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                          peer: Any) -> None:
        """The newest page only: stored (alerting only with ``alert_history``), the baseline set at its top."""
        page = await self._call(HISTORY, lambda: src.history_before(peer, 0, PAGE))
        if page.chat is not None:
            row = await self._follow(row, page.chat)
        msgs = sorted(page.messages, key=lambda x: x.id)
        if not msgs:
            await self.store.set_baseline(row.id, 0)
            await self.store.update_channel(row.id, backfill_done=True)
            return
        top = msgs[-1].id
        complete = len(page.messages) < PAGE  # the whole history fitted in one page
        if not complete:
            # the oldest album may continue below the page: leave it to the backfill, whole
            msgs = msgs[leading_group(msgs):]
        keep = len(msgs) - self._hold_back(msgs)
        commit = msgs[:keep]
        if commit:
            posts = await self._posts(row, commit)
            res = await self.rt.ingestor.ingest(row, posts, rule=AlertRule(alert_history=cfg.alert_history),
                                                cursor=commit[-1].id, seen=len(commit), backfill_low=commit[0].id)
            rep.new += res.new
            rep.alerts += res.alerts
        await self.store.set_baseline(row.id, top)
        if complete and keep == len(msgs):
            await self.store.update_channel(row.id, backfill_done=True)

    def _hold_back(self, msgs: Sequence[Any]) -> int:
        """How many trailing messages to leave for the next poll: an album whose newest part is so recent
        that more of it may still be arriving (it is then stored whole, once)."""
        n = trailing_group(msgs)
        if n == 0:
            return 0
        newest = newest_date(msgs[-n:])
        if newest is not None and newest > self.clock.now() - ALBUM_SETTLE:
            return n
        return 0

    async def _fetch_new(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                         peer: Any, top: int | None) -> int:
        """Page oldest first from the cursor; each page stored with the new cursor in one transaction.
        Returns the highest id seen."""
        rule = AlertRule(alert_history=cfg.alert_history)
        fetch_from = row.cursor or 0
        highest = fetch_from
        carry: list[Any] = []
        while True:
            page = await self._call(HISTORY, lambda f=fetch_from: src.history_after(peer, f, PAGE))
            if page.chat is not None:
                row = await self._follow(row, page.chat)
            got = [x for x in page.messages if x.id > fetch_from]
            if got:
                fetch_from = max(x.id for x in got)
                highest = max(highest, fetch_from)
            msgs = carry + got
            # Telethon emulates min_id on the client: a page shorter than asked is the end only when Telegram's
            # newest id (from the dialog) agrees; otherwise ask again rather than skip a page
            more = bool(got) and (len(page.messages) >= PAGE or (top is not None and fetch_from < top))
            hold = trailing_group(msgs) if more else self._hold_back(msgs)
            if hold >= len(msgs) and more:
                carry = msgs
                continue
            commit, carry = msgs[:len(msgs) - hold], msgs[len(msgs) - hold:]
            if commit:
                posts = await self._posts(row, commit)
                res = await self.rt.ingestor.ingest(row, posts, rule=rule, cursor=commit[-1].id, seen=len(commit))
                rep.new += res.new
                rep.edited += res.edited
                rep.alerts += res.alerts
                row.cursor = commit[-1].id
            if not more:
                break
        if top is not None and highest < top:
            detail = (f"Telegram's newest message is {top} but history paging stopped at {highest}: "
                      "messages may be missing")
            if await self._open_incident("poll_gap", cfg.key, detail):
                event(log, logging.WARNING, "poll gap", channel=cfg.key, top=top, reached=highest)
        return highest

    async def _reread(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                      peer: Any) -> None:
        """Re-read the recent window: edits become new versions, posts that are gone are marked deleted."""
        since = self.clock.now() - timedelta(hours=self.settings.schedule.reread_hours)
        async with self.store.sessions() as s:
            stored = (await s.execute(
                select(m.Post.message_id, m.Post.member_ids, m.Post.album_id)
                .where(m.Post.channel_id == row.id, m.Post.date >= since, m.Post.deleted.is_(False))
                .order_by(m.Post.message_id.desc()).limit(REREAD_MAX))).all()
        ids: list[int] = []
        chosen: list[tuple[int, tuple[int, ...], int | None]] = []
        for mid, members, album in stored:
            member_ids = tuple(members or (mid,))
            if len(ids) + len(member_ids) > REREAD_MAX:
                break
            ids.extend(member_ids)
            chosen.append((mid, member_ids, album))
        if not ids:
            return
        found = await self._call(BY_IDS, lambda: src.by_ids(peer, ids))
        posts: list[Post] = []
        gone: list[int] = []
        for mid, members, album in chosen:
            msgs = [found[i] for i in members if found.get(i) is not None]
            if not msgs:
                gone.append(mid)
                continue
            p = album_post(msgs) if album else to_post(msgs[0])
            posts.append(replace(p, message_id=mid, member_ids=members if album else ()))
        if posts:
            res = await self.rt.ingestor.ingest(row, posts, rule=AlertRule(alert_history=cfg.alert_history))
            rep.edited += res.edited
            rep.alerts += res.alerts
        if gone:
            n = await self.store.mark_deleted(row.id, gone)
            if n:
                event(log, logging.INFO, "posts deleted on Telegram", channel=cfg.key, count=n)

    async def _count_check(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, peer: Any) -> None:
        """Compare the server's message count with every id we have seen (service and album members
        included); a shortfall is an operator problem, reported, not hidden."""
        if not row.backfill_done:
            return  # without the whole history seen, a count says nothing about gaps: spare the request
        total, newest = await self._call(HISTORY, lambda: src.server_count(peer))
        await self.store.update_channel(row.id, server_count=total)
        missing = total - (row.seen_count or 0) - max(0, newest - (row.cursor or 0))
        if missing > 0:
            detail = f"Telegram counts {total} messages, {row.seen_count} seen: about {missing} missing"
            if await self._open_incident("count_gap", cfg.key, detail):
                event(log, logging.WARNING, "count gap", channel=cfg.key, server=total, seen=row.seen_count)
        else:
            await self._close_incident("count_gap", cfg.key)

    # ------------------------------------------------------------------ backfill

    async def backfill(
        self,
        channel: ChannelConfig,
        *,
        since: datetime | None = None,
        limit: int | None = None,
        alert: bool = False,
        progress: Progress | None = None,
    ) -> PollReport:
        """Walk history backwards from where the last backfill stopped (``channels.backfill_low``), a page at a
        time, each page stored with the new low-water mark in one transaction: killed at any point, the
        same call continues where it stopped. Flood waits up to ``backfill_max_wait`` are waited out
        (asynchronously); a longer one stops the walk with ``deferred_until`` set and nothing lost."""
        rep = PollReport(channel=channel.key)
        src = await self._open()
        rows = await self._rows()
        row = rows.find(channel)
        before = self.requests
        started = self.clock.now()
        try:
            if row is not None and row.not_before is not None and row.not_before > started:
                wait = (row.not_before - started).total_seconds()
                if row.status == "unavailable" or wait > self.backfill_max_wait:
                    rep.deferred_until = row.not_before
                    rep.unavailable = row.status == "unavailable"
                    rep.error = (f"unavailable: {row.status_reason}" if rep.unavailable else
                                 f"Telegram asked to wait until {row.not_before:%H:%M:%S} UTC; run this again then")
                    return rep
                await self._sleep(wait)
            if row is None or row.tg_id is None or row.access_hash is None:
                row = await self._adopt(channel, row, await self._resolve(channel, wait_floods=True))
            try:
                await self._walk_back(src, channel, row, rep, since=since, limit=limit, alert=alert,
                                      progress=progress)
            except UNAVAILABLE_ERRORS as exc:
                raise _Unavailable(_reason(exc)) from None
        except _Unavailable as exc:
            await self._mark_unavailable(channel, row, exc.reason, rep)
            rep.error = f"unavailable: {exc.reason}"
        except Deferred as d:
            await self._defer(channel, row, rep, d)
            rep.error = (f"Telegram asked to wait {d.seconds:.0f} s (flood wait); progress is saved: run the same "
                         f"command again after {rep.deferred_until:%H:%M:%S} UTC")
        finally:
            rep.requests = self.requests - before
            if row is not None:
                await self.store.record_run(row.id, "backfill", started, posts=rep.new, requests=rep.requests,
                                            error=rep.error)
        return rep

    async def _walk_back(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport, *,
                         since: datetime | None, limit: int | None, alert: bool, progress: Progress | None) -> None:
        peer = src.peer(row.tg_id or 0, row.access_hash or 0)
        rule = AlertRule(force=alert)
        low = row.backfill_low
        if row.backfill_done and low is not None:
            if progress is not None:
                progress(0, 0)
            return
        stored = 0
        total: int | None = None
        seen_before = row.seen_count or 0
        while limit is None or stored < limit:
            page = await self._call(HISTORY, lambda o=low: src.history_before(peer, o or 0, PAGE), wait_floods=True)
            if page.chat is not None:
                row = await self._follow(row, page.chat)
            msgs = sorted((x for x in page.messages if low is None or x.id < low), key=lambda x: x.id)
            if total is None and page.total is not None:
                left = max(0, page.total - seen_before)
                total = min(left, limit) if limit is not None else left
            if not msgs:
                await self.store.update_channel(row.id, backfill_done=True)
                break
            full = len(page.messages) >= PAGE
            if full and msgs[0].id > 1:
                # the lowest album may continue on the next page: fetch it whole there
                lead = leading_group(msgs)
                if lead < len(msgs):
                    msgs = msgs[lead:]
            reached_since = False
            if since is not None:
                kept = [x for x in msgs if x.date is None or x.date >= since]
                reached_since = len(kept) < len(msgs)
                msgs = kept
            posts = await self._posts(row, msgs)
            if limit is not None and len(posts) > limit - stored:
                posts = posts[len(posts) - (limit - stored):]
                lowest = min(min(p.ids) for p in posts) if posts else msgs[-1].id + 1
                msgs = [x for x in msgs if x.id >= lowest]
            if not msgs:
                break
            new_low = msgs[0].id
            res = await self.rt.ingestor.ingest(row, posts, rule=rule, seen=len(msgs), backfill_low=new_low)
            low = new_low
            stored += len(posts)
            rep.new += res.new
            rep.edited += res.edited
            rep.alerts += res.alerts
            if progress is not None:
                progress(stored, total)
            if reached_since:
                break
            if low <= 1:
                await self.store.update_channel(row.id, backfill_done=True)
                break
