"""Push updates for joined channels: alerts in seconds, with polling as the reconciler (issue 12).

Telegram pushes an ``updateNewChannelMessage`` / ``updateEditChannelMessage`` for every channel the account
has joined; Telethon's update loop orders them by pts, fills the gaps it notices with
``updates.getChannelDifference`` and, at connect, replays what was missed while disconnected (``catch_up``).
:class:`PushReceiver` takes each such message of a channel this process polls into the very path a poll uses —
matched and stored with its outbox rows in one transaction (``Ingestor.ingest``, arrival ``push``) — so a post
that arrives by push and again by poll is stored once and alerted once.

The cursor is the guarantee and push never weakens it: a pushed post is stored at once, but the channel's
cursor only moves over ids that are all stored (or seen as service messages). A push of 105 while 101–104
are unseen stores 105, leaves the cursor at 100 and asks for a poll soon, which closes the gap.

Push is trusted only as far as it is checked. Every ``PROBE_EVERY`` seconds one ``messages.GetPeerDialogs`` per
100 channels (the probe) tells each joined channel's newest message: a channel that moved beyond what we
have, with that message older than ``PUSH_GRACE``, is polled at once; if no update at all came for it lately,
push has fallen silent there and the channel drops back to polling at ``[schedule] interval`` (an operator
incident says so) until push proves itself again. Telegram saying the update state is lost
(``updatesTooLong``) drops every channel back the same way. Channels the account has not joined get no
updates: they keep being polled at their interval.

The receiver never polls and never schedules: it tells a :class:`PushListener` (the service part) what
should happen, so the same code runs in the service, the tests and the latency benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from telethon import errors, events

from monitor import models as m
from monitor.budget import Deferred
from monitor.config import ChannelConfig
from monitor.ingest import AlertRule, Arrival
from monitor.jobs.base import SessionDead
from monitor.jobs.telethon_base import DIALOGS, log
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.telethon import (
    CHANNEL_UPDATES,
    ChannelMessage,
    TelegramUnreachable,
    channel_message,
    is_service,
    watch_state_loss,
)

if TYPE_CHECKING:
    from telethon import TelegramClient

    from monitor.jobs.telethon import TelethonJobs

#: A post this old that push has not delivered was missed by push (updates normally arrive within a second).
PUSH_GRACE = timedelta(seconds=20)
#: How often the probe compares each joined channel's newest message with what we have.
PROBE_EVERY = 60.0
#: A channel that moved without any update for this long has gone silent (one lost update is a gap, not that).
SILENT_AFTER = 2 * PROBE_EVERY
#: Album parts arriving as separate updates are stored together once none came for this long.
ALBUM_SETTLE = 1.5
#: A gap revealed by a push is polled this soon (Telethon fills the gaps it sees itself within 0.5 s).
GAP_POLL_DELAY = 2.0
#: Channels per GetPeerDialogs request.
PROBE_BATCH = 100
#: The store loop looks at the stop flag this often.
STOP_CHECK = 0.5

PUSH, FALLBACK, POLL = "push", "fallback", "poll"


class PushListener(Protocol):
    """What the receiver asks of whoever schedules the polls (the service part, a test, the benchmark)."""

    def mode_changed(self, key: str, mode: str) -> None:
        """``key`` is now polled as ``mode`` says: ``push`` (reconcile interval), ``fallback`` or ``poll``."""

    def poll_soon(self, key: str, delay: float) -> None:
        """Poll ``key`` in ``delay`` seconds: push revealed a gap or the probe found a post push missed."""

    def alerts_queued(self) -> None:
        """A pushed post queued alerts: deliver them now."""

    async def push_silent(self, keys: Sequence[str], reason: str) -> None:
        """Channels fell back to polling (an operator incident)."""

    async def push_healthy(self) -> None:
        """No channel is in fallback any more (close the incident)."""


@dataclass(slots=True)
class Watched:
    """One channel this process polls, as push sees it."""

    key: str
    cfg: ChannelConfig
    row_id: int
    tg_id: int
    access_hash: int
    joined: bool | None = None  # None: not probed yet
    mode: str = POLL
    highest: int = 0  # the highest message id push delivered
    last_update: float | None = None  # monotonic time of the last update for it
    skipped: set[int] = field(default_factory=set)  # service message ids pushed (never stored as posts)
    fallback_since: float | None = None
    polled_since_fallback: bool = False
    reason: str = ""


@dataclass(slots=True)
class PushStats:
    """Counts since start (the service exports them as Prometheus counters)."""

    updates: int = 0
    stored: int = 0
    edited: int = 0
    alerts: int = 0
    gaps: int = 0
    state_lost: int = 0
    probes: int = 0
    missed: Counter[str] = field(default_factory=Counter)  # per channel: posts polling caught for push


@dataclass(slots=True)
class _Album:
    tg_id: int
    msgs: list[Any]
    seen_at: datetime
    due: float


class PushReceiver:
    """Receives a Telethon client's channel updates and stores them like a poll would (see the module doc).

    ``channels()`` names the Telethon channels this process polls now (key → config); ``listener`` is told
    about mode changes, polls to make and alerts to deliver."""

    def __init__(self, jobs: TelethonJobs, channels: Callable[[], Mapping[str, ChannelConfig]],
                 listener: PushListener, *, grace: timedelta = PUSH_GRACE, silent_after: float = SILENT_AFTER,
                 album_settle: float = ALBUM_SETTLE, gap_delay: float = GAP_POLL_DELAY) -> None:
        self.jobs = jobs
        self.channels = channels
        self.listener = listener
        self.grace = grace
        self.silent_after = silent_after
        self.album_settle = album_settle
        self.gap_delay = gap_delay
        self.clock = jobs.clock
        self.watched: dict[int, Watched] = {}  # by channel id
        self._by_key: dict[str, Watched] = {}  # the same, by configured key
        self.queue: asyncio.Queue[tuple[str, Any, datetime]] = asyncio.Queue()
        self.albums: dict[tuple[int, int], _Album] = {}
        self.stats = PushStats()
        self.listening_since: datetime | None = None  # posts dated before it were published while we were not
        self._client: TelegramClient | None = None
        self._last_refresh = -1e9
        self._stale = True  # a channel was polled that is not watched yet (just resolved): refresh first
        self._silent_reported: set[str] = set()
        jobs.push = self

    # ------------------------------------------------------------------ hooks the Telethon jobs call

    def attach(self, client: TelegramClient) -> None:
        """Listen to ``client``'s channel updates and to Telegram saying the update state is lost."""
        if self._client is client:
            return
        self._client = client
        client.add_event_handler(self._on_update, events.Raw(types=list(CHANNEL_UPDATES)))
        watch_state_loss(client, self._on_state_lost)
        self.listening_since = self.clock.now()

    def missed(self, channel_id: int, posts: Sequence[Post]) -> frozenset[int]:
        """Of the posts a poll is about to store, the ones push should have delivered: the channel is joined and
        pushed, the post was published while we listened, and either push already delivered a later post or
        the post is older than the grace period."""
        w = self.watched.get(channel_id)
        if w is None or not w.joined or self.listening_since is None:
            return frozenset()
        late = self.clock.now() - self.grace
        return frozenset(p.message_id for p in posts if p.date >= self.listening_since
                         and (p.message_id < w.highest or p.date < late))

    def polled(self, channel_id: int, missed: int) -> None:
        """A poll of the channel stored ``missed`` posts push had missed (and, in any case, it was polled)."""
        w = self.watched.get(channel_id)
        if w is None:
            self._stale = True  # its first poll resolved it: updates for it are ours from now on
            return
        if missed:
            self.stats.missed[w.key] += missed
            event(log, logging.INFO, "posts push missed, caught by polling", channel=w.key, posts=missed)
        if w.fallback_since is not None:
            w.polled_since_fallback = True

    def interval(self, key: str) -> int:
        """The poll interval ``key`` should have now: the reconcile interval while push covers it."""
        s = self.jobs.rt.settings  # the settings in force (a reload replaces them)
        w = self._by_key.get(key)
        if w is not None and w.mode == PUSH:
            return s.schedule.reconcile_interval
        cfg = self.channels().get(key)
        return s.channel_interval(cfg) if cfg is not None else s.schedule.interval

    def mode(self, key: str) -> str:
        """``push``, ``fallback`` or ``poll`` (not joined, or not probed yet)."""
        w = self._by_key.get(key)
        return w.mode if w is not None else POLL

    # ------------------------------------------------------------------ what arrives from Telethon

    async def _on_update(self, update: Any) -> None:
        """Telethon's handler: queue the update for :meth:`run` (handlers run as concurrent tasks; storing is
        done one update at a time, in arrival order)."""
        self.queue.put_nowait(("update", update, self.clock.now()))

    def _on_state_lost(self) -> None:
        self.queue.put_nowait(("lost", None, self.clock.now()))

    async def run(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Store what arrives until cancelled (or ``stopping()``): updates one at a time, albums once settled."""
        while not stopping():
            timeout = STOP_CHECK  # a stop is noticed within this, so a clean shutdown never waits for us
            if self.albums:
                timeout = min(timeout, max(0.0, min(a.due for a in self.albums.values()) - time.monotonic()))
            try:
                kind, obj, seen_at = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                await self._flush_albums()
                continue
            try:
                if kind == "lost":
                    await self._state_lost()
                else:
                    await self._handle(obj, seen_at)
                await self._flush_albums()
            except (SessionDead, TelegramUnreachable):
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad update must not stop push: the reconciling poll has it anyway
                event(log, logging.WARNING, "push update not stored", error=f"{type(exc).__name__}: {exc}")
                log.debug("push update failed", exc_info=exc)

    async def drain(self) -> None:
        """Store everything queued now, albums included (tests and the benchmark use it)."""
        while not self.queue.empty():
            kind, obj, seen_at = self.queue.get_nowait()
            if kind == "lost":
                await self._state_lost()
            else:
                await self._handle(obj, seen_at)
        await self._flush_albums(force=True)

    async def _handle(self, update: Any, seen_at: datetime) -> None:
        cm = channel_message(update)
        if cm is None:
            return
        self.stats.updates += 1
        w = await self._watched(cm.channel_id)
        if w is None:
            return  # a channel the account is in but we do not poll here
        msg = cm.message
        w.last_update = time.monotonic()
        if w.joined is not True:
            w.joined = True  # an update proves it
        if not cm.edited:
            w.highest = max(w.highest, msg.id)
        self._raise_top(w.tg_id, msg.id)
        if w.fallback_since is not None and w.polled_since_fallback:
            await self._recover(w, "an update arrived again")
        if is_service(msg):
            w.skipped.add(msg.id)
            await self._advance(w, [msg.id])
            return
        if msg.grouped_id and not cm.edited:
            album = self.albums.get((w.tg_id, msg.grouped_id))
            if album is None:
                album = self.albums[(w.tg_id, msg.grouped_id)] = _Album(w.tg_id, [], seen_at, 0.0)
            album.msgs.append(msg)
            album.due = time.monotonic() + self.album_settle
            return
        await self._store(w, [cm], seen_at)

    async def _flush_albums(self, force: bool = False) -> None:
        now = time.monotonic()
        for key, album in list(self.albums.items()):
            if force or album.due <= now:
                del self.albums[key]
                w = self.watched.get(album.tg_id)
                if w is not None:
                    await self._store(w, [ChannelMessage(album.tg_id, x, False) for x in album.msgs], album.seen_at)

    async def _store(self, w: Watched, cms: Sequence[ChannelMessage], seen_at: datetime) -> None:
        """One pushed message (or album) through the poll's ingest path; then the cursor, if no gap is left."""
        jobs = self.jobs
        row = await jobs.store.get_channel(w.row_id)
        if row.baseline_id is None:
            return  # the channel's first poll has not run: it sets the baseline and stores these itself
        msgs = [c.message for c in cms]
        posts = await jobs._posts(row, msgs)
        if posts:
            res = await jobs.rt.ingestor.ingest(row, posts, rule=AlertRule(alert_history=w.cfg.alert_history),
                                                arrival=Arrival("push", seen_at=seen_at), advance_cursor=False)
            self.stats.stored += res.new
            self.stats.edited += res.edited
            self.stats.alerts += res.alerts
            if res.alerts:
                self.listener.alerts_queued()
        await self._advance(w, [x.id for x in msgs])

    async def _advance(self, w: Watched, ids: Sequence[int]) -> None:
        """Move the cursor over every id above it that is stored or was pushed as a service message, up to
        the first one missing; a pushed id left above a missing one is a gap for a poll to close soon."""
        store = self.jobs.store
        for _attempt in range(3):
            async with store.sessions() as s:
                cursor = int((await s.execute(select(m.Channel.cursor).where(m.Channel.id == w.row_id)))
                             .scalar_one() or 0)
                top = max(ids, default=0)
                if top <= cursor:
                    return
                stored = (await s.execute(
                    select(m.Post.message_id, m.Post.member_ids)
                    .where(m.Post.channel_id == w.row_id, m.Post.message_id > cursor - 200,
                           or_(m.Post.message_id > cursor, m.Post.member_ids.is_not(None)))
                    .order_by(m.Post.message_id).limit(5000))).all()
            known = {i for i in ids if i > cursor} | {i for i in w.skipped if i > cursor}
            for mid, members in stored:
                known.add(int(mid))
                known.update(int(x) for x in (members or ()))
            new = cursor
            while new + 1 in known:
                new += 1
            w.skipped = {i for i in w.skipped if i > new}
            if new > cursor:
                async with store.sessions.begin() as s:
                    # compare-and-set: a poll that moved the cursor meanwhile wins, and we look again
                    res = cast("CursorResult[Any]", await s.execute(
                        update(m.Channel).where(m.Channel.id == w.row_id, m.Channel.cursor == cursor)
                        .values(cursor=new, seen_count=m.Channel.seen_count + (new - cursor))))
                if not res.rowcount:
                    continue
            if top > new:
                self.stats.gaps += 1
                event(log, logging.INFO, "push gap: polling to close it", channel=w.key, cursor=new, pushed=top)
                self.listener.poll_soon(w.key, self.gap_delay)
            return

    def _raise_top(self, tg_id: int, mid: int) -> None:
        known = self.jobs.tops_known.get(tg_id)
        if known is not None and known[0] < mid:
            self.jobs.tops_known[tg_id] = (mid, known[1])

    # ------------------------------------------------------------------ the channels watched

    async def _watched(self, tg_id: int) -> Watched | None:
        """The watched channel of an update; None for the account's other channels and groups (their updates
        come too, and cost no database read: the list is read again only after a poll met a new channel)."""
        w = self.watched.get(tg_id)
        if w is None and self._stale and time.monotonic() - self._last_refresh > 1.0:
            await self.refresh()
            w = self.watched.get(tg_id)
        return w

    async def refresh(self) -> None:
        """Follow the channels this process polls now (leases move, the config is reloaded, first polls
        resolve channels): one read of ``channels``."""
        self._last_refresh = time.monotonic()
        self._stale = False
        wanted = dict(self.channels())
        rows = await self.jobs._rows()
        fresh: dict[int, Watched] = {}
        for key, cfg in wanted.items():
            row = rows.find(cfg)
            if row is None or row.tg_id is None or row.access_hash is None or row.status != "active":
                continue
            w = self.watched.get(row.tg_id)
            if w is None or w.key != key:
                w = Watched(key=key, cfg=cfg, row_id=row.id, tg_id=row.tg_id, access_hash=row.access_hash)
            else:
                w.cfg, w.access_hash = cfg, row.access_hash
            fresh[row.tg_id] = w
        for tg_id, w in self.watched.items():
            if tg_id not in fresh and w.mode != POLL:
                self.listener.mode_changed(w.key, POLL)
        self.watched = fresh
        self._by_key = {w.key: w for w in fresh.values()}

    # ------------------------------------------------------------------ health

    async def probe(self) -> int:
        """Compare each watched channel's newest message (GetPeerDialogs, 100 channels a request) with what we
        have; poll the ones push left behind, fall back to polling where push went silent. Returns the
        requests made."""
        await self.refresh()
        if not self.watched:
            return 0
        jobs = self.jobs
        src = await jobs._open()
        rows = {r.id: r for r in await jobs.store.channels()}
        now, mono = self.clock.now(), time.monotonic()
        made = 0
        ws = list(self.watched.values())
        silent: list[Watched] = []
        for i in range(0, len(ws), PROBE_BATCH):
            batch = ws[i:i + PROBE_BATCH]
            peers = [src.peer(w.tg_id, w.access_hash) for w in batch]
            try:
                state = await jobs._call(DIALOGS, partial(src.dialog_state, peers))
            except (SessionDead, TelegramUnreachable):
                raise
            except (Deferred, errors.RPCError) as exc:
                event(log, logging.DEBUG, "push probe failed", error=type(exc).__name__)
                continue
            made += 1
            for w in batch:
                top = state.tops.get(w.tg_id)
                joined = top is not None
                if joined != w.joined:
                    w.joined = joined
                if not joined:
                    self._set_mode(w, POLL)
                    continue
                assert top is not None
                jobs.tops_known[w.tg_id] = (top, self.clock.monotonic())
                row = rows.get(w.row_id)
                have = max(w.highest, int(row.cursor or 0) if row is not None else 0)
                when = state.dates.get(w.tg_id)
                behind = top > have and (when is None or when < now - self.grace)
                if behind:
                    self.listener.poll_soon(w.key, 0.0)  # reconcile now: alert late rather than never
                    quiet = w.last_update is None or mono - w.last_update > self.silent_after
                    if quiet and w.fallback_since is None:
                        w.reason = (f"Telegram shows message {top} but no update came for it "
                                    f"(we have up to {have})")
                        silent.append(w)
                        continue
                if w.fallback_since is not None:
                    if (not behind and w.polled_since_fallback
                            and mono - w.fallback_since >= self.jobs.rt.settings.schedule.reconcile_interval):
                        await self._recover(w, "in step with Telegram again")
                    continue
                self._set_mode(w, PUSH)
        self.stats.probes += 1
        if silent:
            await self._fall_back(silent)
        return made

    async def _state_lost(self) -> None:
        """``updatesTooLong``: Telegram will not push what we missed; every pushed channel falls back."""
        self.stats.state_lost += 1
        event(log, logging.WARNING, "Telegram reported the update state lost (updatesTooLong)")
        ws = [w for w in self.watched.values() if w.mode == PUSH]
        for w in ws:
            w.reason = "Telegram reported the update state lost (updatesTooLong)"
        await self._fall_back(ws)

    async def _fall_back(self, ws: Sequence[Watched]) -> None:
        if not ws:
            return
        mono = time.monotonic()
        for w in ws:
            w.fallback_since = mono
            w.polled_since_fallback = False
            self._set_mode(w, FALLBACK)
            event(log, logging.WARNING, "push silent: polling at the interval again", channel=w.key,
                  reason=w.reason)
        reason = ws[0].reason if len({w.reason for w in ws}) == 1 else "push updates stopped for these channels"
        await self.listener.push_silent([w.key for w in ws], reason)

    async def _recover(self, w: Watched, why: str) -> None:
        w.fallback_since = None
        w.polled_since_fallback = False
        self._set_mode(w, PUSH)
        event(log, logging.INFO, "push working again: reconciling only", channel=w.key, why=why)
        if not any(x.fallback_since is not None for x in self.watched.values()):
            await self.listener.push_healthy()

    def _set_mode(self, w: Watched, mode: str) -> None:
        if w.mode != mode:
            w.mode = mode
            self.listener.mode_changed(w.key, mode)

    def in_fallback(self) -> list[str]:
        """The channels polled at their interval because push went silent for them."""
        return sorted(w.key for w in self.watched.values() if w.fallback_since is not None)
