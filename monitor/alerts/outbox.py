"""The outbox: which alerts a saved post produces, and the claim/retry/mark functions that drain it.

``OutboxPlanner.plan`` runs inside the store's batch transaction, so a post and its outbox rows are
committed together or not at all. Deduplication is by (destination, channel, message, entity) in
``alert_entities``: a re-poll, a re-import, a restart or an edit never alerts twice for one entity.

Besides the planner, the functions here are the only writers of ``alerts``: a delivery worker claims
due rows (on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, on SQLite with one conditional UPDATE, since
SQLite writers are serialised anyway), sends them, then marks them sent or schedules a retry.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from monitor import models as m
from monitor.config import AlertDestination, Settings, parse_channel_ref
from monitor.db import database_now, sessionmaker
from monitor.matching import EntitySpec
from monitor.models import now as utcnow
from monitor.posts import channel_label
from monitor.store import SavedPost, Store

MATCH, OPERATOR, FOLLOWUP = "match", "operator", "followup"
PENDING, SENT, FAILED, SILENT = "pending", "sent", "failed", "silent"
STATUSES = (PENDING, SENT, FAILED, SILENT)

LEASE = timedelta(minutes=5)  # a claim a crashed worker left behind is taken over after this
BACKOFF_BASE = 30.0  # seconds before the first retry; doubles each attempt
BACKOFF_CAP = 6 * 3600.0


# Alert codes. Receivers de-duplicate on them, so two alerts must never share one. Until December 2026
# a code was 6 hex digits of a hash of the row's dedupe key (24 bits): two alerts shared a code after
# ~2,400 alerts. Now a code is the row's id (unique in the database) passed through a fixed 34-bit
# permutation, written as 7 Crockford base-32 characters whose first is a letter. Unique by
# construction (no retry, no race between processes); stable (computed once, stored); never equal to
# an old 6-character code, so old codes keep naming their rows; never all digits, so ``alerts retry
# 1234567`` cannot mean both an id and a code. The permutation only makes neighbouring alerts look
# unrelated (a typo names no other alert, codes do not read as a counter); it is not a secret.
_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford: no i, l, o, u (nothing to misread)
_CODE_BITS = 34  # 4 bits in the leading letter, 5 in each of the 6 others: 17 billion alerts
_HALF = _CODE_BITS // 2
_HALF_MASK = (1 << _HALF) - 1
_ROUND_KEYS = (0x5BD1E995, 0x1B873593, 0x2C1B3C6D, 0x297A2D39)  # fixed forever: codes are stored, not recomputed
PENDING_CODE = ""  # a new row's code until the row has its id (set in the same transaction)


def _permute(n: int) -> int:
    """A bijection of [0, 2**34): a four-round Feistel network over two 17-bit halves."""
    left, right = n >> _HALF, n & _HALF_MASK
    for key in _ROUND_KEYS:
        mixed = ((right * 0x9E3779B1) ^ key) & 0xFFFFFFFF
        mixed = (mixed ^ (mixed >> 15)) * 0x85EBCA6B & 0xFFFFFFFF
        left, right = right, left ^ ((mixed ^ (mixed >> 13)) & _HALF_MASK)
    return (left << _HALF) | right


def code_for_id(alert_id: int) -> str:
    """The short code (``k3x9d2m``) of the alert with row id ``alert_id``: unique, stable, 7 characters.

    Past 2**34 rows the code grows (``z`` + the id in base 32): still unique, just longer."""
    if alert_id < 0:
        raise ValueError("an alert id is never negative")
    if alert_id >= 1 << _CODE_BITS:
        digits = ""
        n = alert_id
        while n:
            n, r = divmod(n, 32)
            digits = _B32[r] + digits
        return "z" + digits
    v = _permute(alert_id)
    tail = ""
    for _ in range(6):
        v, r = divmod(v, 32)
        tail = _B32[r] + tail
    return _B32[10 + v] + tail  # v < 16 here: one of the 16 letters a … s


async def _assign_codes(session: AsyncSession, alerts: Iterable[m.Alert]) -> None:
    """Give freshly flushed alerts (they have ids now) their codes, in the caller's transaction."""
    for a in alerts:
        if a.code == PENDING_CODE:
            a.code = code_for_id(a.id)
    await session.flush()


def _digest(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: about 30 s, 60 s, 2 min, ... capped at 6 h, each 50–100 %."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return delay * (0.5 + 0.5 * (rng or random).random())


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class _Route:
    """A destination's ``entities`` / ``channels`` filters, resolved once."""

    entity_ids: frozenset[str] | None
    usernames: frozenset[str]
    ids: frozenset[int]
    titles: frozenset[str]

    @classmethod
    def build(cls, dest: AlertDestination, specs: Iterable[EntitySpec]) -> _Route:
        ents: frozenset[str] | None = None
        if dest.entities:
            wanted = {e.casefold().strip() for e in dest.entities}
            ents = frozenset(s.id for s in specs
                             if s.id.casefold() in wanted or s.name.casefold() in wanted
                             or any(a.casefold() in wanted for a in s.aliases))
        usernames: set[str] = set()
        ids: set[int] = set()
        titles: set[str] = set()
        for ref in dest.channels:
            try:
                u, i = parse_channel_ref(ref)
            except ValueError:
                titles.add(ref.casefold().strip())  # a title is accepted too
                continue
            if u:
                usernames.add(u)
            if i is not None:
                ids.add(i)
        return cls(ents, frozenset(usernames), frozenset(ids), frozenset(titles))

    def wants_channel(self, ch: m.Channel) -> bool:
        if not (self.usernames or self.ids or self.titles):
            return True
        return ((ch.username or "") in self.usernames or (ch.tg_id is not None and ch.tg_id in self.ids)
                or (ch.title or "").casefold() in self.titles)

    def wants_entity(self, entity_id: str) -> bool:
        return self.entity_ids is None or entity_id in self.entity_ids


# --------------------------------------------------------------------------- planning


@dataclass(slots=True)
class _Prior:
    """A match alert that later posts of the same story (same origin, or same text) may join."""

    alert: m.Alert
    post_id: int
    date: datetime
    channel_id: int
    fwd: tuple[int | str | None, int | None]  # its forward origin (see _key)
    own: tuple[int | str | None, int | None]  # this post as an origin: a forward's origin may be this post
    text_hash: str | None


def _key(channel_id: int | None, username: str | None, message_id: int | None) -> tuple[int | str | None, int | None]:
    """A post as a forward origin: (channel's Telegram id, message id), or ("@username", message id) when the
    id is unknown (the web preview names a forward's origin and a web channel by username only)."""
    if channel_id is not None:
        return channel_id, message_id
    return (f"@{username.lower()}" if username else None), message_id


def _origin(sp: SavedPost) -> tuple[int | str, int] | None:
    f = sp.post.forward
    if not f or not f.message_id:
        return None
    chan, _ = _key(f.channel_id or None, f.username, f.message_id)
    return (chan, f.message_id) if chan is not None else None


class OutboxPlanner:
    """Decides which outbox rows freshly saved posts produce (called inside the store's transaction)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery = settings.delivery
        self.destinations = [d for d in settings.alerts if not d.operator]  # operators get no match alerts
        self.routes = {d.name: _Route.build(d, settings.entities) for d in self.destinations}
        self.silent = frozenset(s.id for s in settings.entities if s.silent)
        self.window = timedelta(hours=settings.delivery.repost_window_hours)

    async def plan(self, session: AsyncSession, channel: m.Channel, saved: Sequence[SavedPost]) -> int:
        """Add outbox rows for ``saved``; returns how many alerts will be sent (silent rows not counted)."""
        cands = [sp for sp in saved if sp.alertable and sp.new_entity_ids]
        dests = [d for d in self.destinations if self.routes[d.name].wants_channel(channel)]
        if not cands or not dests:
            return 0
        done: set[tuple[str, int, str]] = set()
        msg_ids = [sp.post.message_id for sp in cands]
        for i in range(0, len(msg_ids), 500):
            rows = await session.execute(
                select(m.AlertEntity.destination, m.AlertEntity.message_id, m.AlertEntity.entity_id).where(
                    m.AlertEntity.channel_id == channel.id, m.AlertEntity.message_id.in_(msg_ids[i:i + 500])))
            done.update((d, int(mid), e) for d, mid, e in rows)
        label = channel_label(channel.username, channel.title, channel.tg_id)
        priors = await self._priors(session, cands, [d.name for d in dests])
        links: list[tuple[m.Alert, str, int, str]] = []  # alert_entities rows, written once alerts have ids
        created = 0
        for sp in cands:
            msg = sp.post.message_id
            for d in dests:
                route = self.routes[d.name]
                ents = [e for e in sp.new_entity_ids if route.wants_entity(e) and (d.name, msg, e) not in done]
                if not ents:
                    continue
                done.update((d.name, msg, e) for e in ents)
                prior = next((p for p in priors if p.alert.destination == d.name and self._same_story(sp, p)
                              and set(p.alert.entity_ids) & set(ents)), None)
                if prior is not None:
                    covered, ents = self._join(session, channel, label, sp, prior, ents)
                    links.extend((prior.alert, d.name, msg, e) for e in covered)
                if ents:
                    alert = self._new_alert(channel, sp, d.name, ents)
                    session.add(alert)
                    links.extend((alert, d.name, msg, e) for e in ents)
                    created += alert.status == PENDING
                    priors.append(_Prior(alert, sp.post_id, sp.post.date, channel.id, _fwd_pair(sp),
                                         _key(channel.tg_id, channel.username, msg), sp.text_hash))
        fresh = [o for o in session.new if isinstance(o, m.Alert)]
        await session.flush()  # the new alerts get their ids, and from them their codes
        await _assign_codes(session, fresh)
        link_rows = [{"destination": dn, "channel_id": channel.id, "message_id": msg, "entity_id": e,
                      "alert_id": a.id} for a, dn, msg, e in links]
        for i in range(0, len(link_rows), 1000):
            await session.execute(insert(m.AlertEntity), link_rows[i:i + 1000])
        return created

    def _same_story(self, sp: SavedPost, p: _Prior) -> bool:
        """A forward of the same origin (or of that origin itself), or the same text within the window.
        With ``alert_on_forwards`` a forward stands on its own."""
        if p.post_id == sp.post_id:  # an edit of this very post alerts for its new entities
            return False
        origin = _origin(sp)
        if origin is not None:
            if self.delivery.alert_on_forwards:
                return False
            if p.fwd == origin or p.own == origin:
                return True
        return bool(sp.text_hash and self.window and p.text_hash == sp.text_hash
                    and abs(p.date - sp.post.date) <= self.window)

    async def _priors(self, s: AsyncSession, cands: Sequence[SavedPost], dest_names: list[str]) -> list[_Prior]:
        """Match alerts of earlier posts that share a forward origin or a text hash with this batch."""
        origins = {o for sp in cands if (o := _origin(sp)) is not None} if not self.delivery.alert_on_forwards \
            else set()
        hashes = sorted({sp.text_hash for sp in cands if sp.text_hash}) if self.window else []
        conds = []
        for c, mid in origins:
            if isinstance(c, str):  # "@username": an origin known by username only (web forwards)
                conds.append(and_(m.Post.fwd_username == c[1:], m.Post.fwd_channel_id.is_(None),
                                  m.Post.fwd_message_id == mid))
                conds.append(and_(m.Channel.username == c[1:], m.Channel.tg_id.is_(None), m.Post.message_id == mid))
                continue
            conds.append(and_(m.Post.fwd_channel_id == c, m.Post.fwd_message_id == mid))
            conds.append(and_(m.Channel.tg_id == c, m.Post.message_id == mid))
        out: list[_Prior] = []
        chunks = [hashes[i:i + 500] for i in range(0, len(hashes), 500)] or [[]]
        for n, chunk in enumerate(chunks):
            where = [*(conds if n == 0 else []), *([m.Post.text_hash.in_(chunk)] if chunk else [])]
            if not where:
                continue
            q = (select(m.Alert, m.Post.id, m.Post.date, m.Post.channel_id, m.Post.fwd_channel_id,
                        m.Post.fwd_message_id, m.Channel.tg_id, m.Post.message_id, m.Post.text_hash,
                        m.Post.fwd_username, m.Channel.username)
                 .join(m.Post, m.Alert.post_id == m.Post.id).join(m.Channel, m.Post.channel_id == m.Channel.id)
                 .where(m.Alert.kind == MATCH, m.Alert.destination.in_(dest_names), or_(*where))
                 .order_by(m.Alert.id))
            for alert, pid, date, chid, fch, fmsg, tg_id, mid, th, fuser, uname in (await s.execute(q)).all():
                out.append(_Prior(alert, pid, date, chid, _key(fch, fuser, fmsg), _key(tg_id, uname, mid), th))
        out.sort(key=lambda p: p.alert.id)
        return out

    def _join(
        self, s: AsyncSession, channel: m.Channel, label: str, sp: SavedPost, prior: _Prior, ents: list[str],
    ) -> tuple[list[str], list[str]]:
        """Fold this post into an earlier alert of the same story: (entities it covers, entities still to alert)."""
        alert = prior.alert
        covered = [e for e in ents if e in alert.entity_ids]
        extra = [e for e in ents if e not in alert.entity_ids]
        if extra and alert.status == PENDING:
            # not sent yet: the one alert simply names the extra entities too
            loud = [e for e in extra if e not in self.silent]
            if loud:
                alert.entity_ids = [*alert.entity_ids, *loud]
            covered, extra = ents, []
        in_window = abs(sp.post.date - prior.date) <= self.window
        if in_window and prior.channel_id != channel.id and label not in alert.also_in:
            alert.also_in = [*alert.also_in, label]
            if alert.status == SENT:
                # already delivered: a follow-up line rides on the next message to this destination
                key = f"f:{alert.id}:{channel.id}:{sp.post.message_id}"
                s.add(m.Alert(dedupe_key=key, code=PENDING_CODE, destination=alert.destination, kind=FOLLOWUP,
                              post_id=sp.post_id, entity_ids=covered, also_in=[label], title=alert.code,
                              status=PENDING, attempts=0, next_attempt_at=utcnow(), created_at=utcnow()))
        return covered, extra

    def _new_alert(self, channel: m.Channel, sp: SavedPost, dest_name: str, ents: list[str]) -> m.Alert:
        loud = [e for e in ents if e not in self.silent]
        key = f"m:{channel.id}:{sp.post.message_id}:{_digest(dest_name, sorted(ents))[:20]}"
        t = utcnow()
        return m.Alert(dedupe_key=key, code=PENDING_CODE, destination=dest_name, kind=MATCH, post_id=sp.post_id,
                       entity_ids=loud or ents, also_in=[], status=PENDING if loud else SILENT, attempts=0,
                       next_attempt_at=t, created_at=t)


def _fwd_pair(sp: SavedPost) -> tuple[int | str | None, int | None]:
    f = sp.post.forward
    return _key(f.channel_id, f.username, f.message_id) if f else (None, None)


# --------------------------------------------------------------------------- operator alerts


async def enqueue_operator_alert(
    target: AsyncSession | Store | AsyncEngine,
    settings: Settings,
    *,
    title: str,
    body: str,
    key: str,
) -> int:
    """An outbox row for every ``operator = true`` destination, once per ``key`` (e.g. ``"dead-session"``
    or ``"unavailable:@chan:2025-05-20"``): calling it again with the same key adds nothing.

    ``target`` is an open session (joins its transaction), a Store or an engine. Returns rows added."""
    dests = [d for d in settings.alerts if d.operator]
    if not dests:
        return 0
    if isinstance(target, AsyncSession):
        return await _enqueue_operator(target, dests, title, body, key)
    engine = target.engine if isinstance(target, Store) else target
    async with sessionmaker(engine).begin() as s:
        return await _enqueue_operator(s, dests, title, body, key)


async def _enqueue_operator(s: AsyncSession, dests: list[AlertDestination], title: str, body: str, key: str) -> int:
    t = utcnow()
    rows = []
    for d in dests:
        dk = f"op:{_digest(d.name, key)[:32]}"
        rows.append({"dedupe_key": dk, "code": PENDING_CODE, "destination": d.name, "kind": OPERATOR,
                     "entity_ids": [], "also_in": [], "title": title, "body": body, "status": PENDING,
                     "attempts": 0, "next_attempt_at": t, "created_at": t})
    ins = (postgresql.insert(m.Alert) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(m.Alert))
    res = await s.execute(ins.values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
                          .returning(m.Alert.id))
    ids = [int(i) for i in res.scalars()]  # only the rows inserted now (a repeated key returns nothing)
    for i in ids:
        await s.execute(update(m.Alert).where(m.Alert.id == i).values(code=code_for_id(i)))
    return len(ids)


# --------------------------------------------------------------------------- claim / mark / retry


def _claimable(destination: str, at: datetime) -> list[Any]:
    return [m.Alert.destination == destination, m.Alert.status == PENDING, m.Alert.next_attempt_at <= at,
            or_(m.Alert.claimed_until.is_(None), m.Alert.claimed_until < at)]


async def claim_due(
    engine: AsyncEngine,
    destination: str,
    worker: str,
    *,
    at: datetime | None = None,
    limit: int = 1000,
    lease: timedelta = LEASE,
) -> list[m.Alert]:
    """Claim up to ``limit`` due rows of one destination for ``worker`` (oldest first) and return them.

    Two workers never hold the same row: PostgreSQL skips rows another claim has locked; SQLite runs
    the claim as one conditional UPDATE, and its writers are serialised. Without ``at`` the claim is timed
    by the database's clock, which every process sharing it agrees on (a host whose clock runs ahead would
    otherwise take over claims that have not expired)."""
    async with sessionmaker(engine).begin() as s:
        if at is None:
            at = await database_now(s)
        conds = _claimable(destination, at)
        if engine.dialect.name == "postgresql":
            ids = list((await s.execute(select(m.Alert.id).where(*conds).order_by(m.Alert.id).limit(limit)
                                        .with_for_update(skip_locked=True))).scalars())
            if not ids:
                return []
            await s.execute(update(m.Alert).where(m.Alert.id.in_(ids))
                            .values(claimed_by=worker, claimed_until=at + lease))
        else:
            sub = select(m.Alert.id).where(*conds).order_by(m.Alert.id).limit(limit).scalar_subquery()
            res = await s.execute(update(m.Alert).where(m.Alert.id.in_(sub), *conds)
                                  .values(claimed_by=worker, claimed_until=at + lease).returning(m.Alert.id))
            ids = list(res.scalars())
            if not ids:
                return []
        rows = await s.execute(select(m.Alert).where(m.Alert.id.in_(ids), m.Alert.claimed_by == worker)
                               .order_by(m.Alert.id))
        return list(rows.scalars())


async def renew_claim(engine: AsyncEngine, ids: Sequence[int], worker: str, *, lease: timedelta = LEASE) -> set[int]:
    """Extend ``worker``'s claim on ``ids`` right before sending them (a long pass to a slow destination must
    not outlive its claim); returns the ids still claimed by ``worker``. One missing means its claim expired
    and another worker took the row over (or an operator retried it): do not send it, it is theirs now."""
    if not ids:
        return set()
    async with sessionmaker(engine).begin() as s:
        t = await database_now(s)
        res = await s.execute(update(m.Alert).where(m.Alert.id.in_(list(ids)), m.Alert.claimed_by == worker,
                                                    m.Alert.status == PENDING)
                              .values(claimed_until=t + lease).returning(m.Alert.id))
        return set(res.scalars())


async def release(engine: AsyncEngine, ids: Sequence[int], worker: str) -> None:
    """Give back claimed rows unsent (rate limit reached, quiet hours): they stay due."""
    if not ids:
        return
    async with sessionmaker(engine).begin() as s:
        await s.execute(update(m.Alert).where(m.Alert.id.in_(list(ids)), m.Alert.claimed_by == worker)
                        .values(claimed_by=None, claimed_until=None))


async def mark_sent(engine: AsyncEngine, ids: Sequence[int], worker: str, sent_at: datetime) -> int:
    """Rows delivered in one message: sent, with that message's time. Only rows ``worker`` still holds are
    marked; returns how many (fewer than ``ids`` means a claim was lost while sending: the caller says so)."""
    async with sessionmaker(engine).begin() as s:
        res = await s.execute(update(m.Alert).where(m.Alert.id.in_(list(ids)), m.Alert.claimed_by == worker)
                              .values(status=SENT, sent_at=sent_at, attempts=m.Alert.attempts + 1, last_error=None,
                                      claimed_by=None, claimed_until=None))
        return int(cast("CursorResult[Any]", res).rowcount or 0)


async def mark_failed_attempt(
    engine: AsyncEngine,
    ids: Sequence[int],
    worker: str,
    reason: str,
    *,
    max_attempts: int,
    at: datetime | None = None,
    rng: random.Random | None = None,
) -> tuple[int, int]:
    """One failed attempt for each row: retry later with backoff, or ``failed`` after ``max_attempts``.

    Returns (rows to retry, rows failed for good)."""
    at = at or utcnow()
    retry = failed = 0
    async with sessionmaker(engine).begin() as s:
        rows = (await s.execute(select(m.Alert).where(m.Alert.id.in_(list(ids)), m.Alert.claimed_by == worker)))
        for a in rows.scalars():
            a.attempts += 1
            a.last_error = reason[:2000]
            a.claimed_by, a.claimed_until = None, None
            if a.attempts >= max_attempts:
                a.status = FAILED
                failed += 1
            else:
                a.next_attempt_at = at + timedelta(seconds=backoff_seconds(a.attempts, rng))
                retry += 1
    return retry, failed


async def sent_messages_since(engine: AsyncEngine, destination: str, since: datetime) -> int:
    """Messages sent to ``destination`` since ``since``: rows sent together share one ``sent_at``."""
    async with sessionmaker(engine)() as s:
        q = (select(func.count(func.distinct(m.Alert.sent_at)))
             .where(m.Alert.destination == destination, m.Alert.status == SENT, m.Alert.sent_at >= since))
        return int((await s.execute(q)).scalar_one())


async def retry_alerts(engine: AsyncEngine, *, ref: str | None = None, failed: bool = False) -> list[m.Alert]:
    """Make alerts due again now: one by id or code (``17``, ``k3x9d2m``, ``#k3x9d2m``, an old ``a1b2c3``),
    or every failed one.

    A sent alert is left alone (it reached its destination). Returns the rows made due."""
    async with sessionmaker(engine).begin() as s:
        q = select(m.Alert)
        if ref is not None:
            q = q.where(_ref_filter(ref))
        if failed:
            q = q.where(m.Alert.status == FAILED)
        rows = [a for a in (await s.execute(q)).scalars() if a.status in (FAILED, PENDING)]
        t = utcnow()
        for a in rows:
            a.status, a.attempts, a.next_attempt_at = PENDING, 0, t
            a.claimed_by, a.claimed_until = None, None
        return rows


async def find_alerts(engine: AsyncEngine, ref: str) -> list[m.Alert]:
    """Alerts by id or code, whatever their status."""
    async with sessionmaker(engine)() as s:
        return list((await s.execute(select(m.Alert).where(_ref_filter(ref)))).scalars())


def _ref_filter(ref: str) -> Any:
    """``17`` (an id, or an old code made of digits), ``k3x9d2m``, ``#k3x9d2m`` or an old ``a1b2c3``."""
    r = ref.strip().lstrip("#").lower()
    return or_(m.Alert.code == r, m.Alert.id == int(r)) if r.isdigit() and len(r) < 18 else m.Alert.code == r


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One outbox row as ``alerts list`` shows it."""

    id: int
    code: str
    destination: str
    kind: str
    status: str
    attempts: int
    channel: str | None
    message_id: int | None
    entities: list[str]
    also_in: list[str]
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "code": self.code, "destination": self.destination, "kind": self.kind,
                "status": self.status, "attempts": self.attempts, "channel": self.channel,
                "message_id": self.message_id, "entities": self.entities, "also_in": self.also_in,
                "created_at": self.created_at.isoformat(),
                "sent_at": self.sent_at.isoformat() if self.sent_at else None,
                "next_attempt_at": self.next_attempt_at.isoformat(), "last_error": self.last_error}


async def list_alerts(engine: AsyncEngine, *, status: str | None = None, limit: int | None = None) -> list[AlertRow]:
    """Outbox rows, newest first, optionally of one status."""
    q = (select(m.Alert, m.Post.message_id, m.Channel.username, m.Channel.title, m.Channel.tg_id)
         .outerjoin(m.Post, m.Alert.post_id == m.Post.id).outerjoin(m.Channel, m.Post.channel_id == m.Channel.id)
         .order_by(m.Alert.id.desc()))
    if status:
        q = q.where(m.Alert.status == status)
    if limit:
        q = q.limit(limit)
    async with sessionmaker(engine)() as s:
        names = {e.id: e.name for e in (await s.execute(select(m.Entity))).scalars()}
        out = []
        for a, mid, username, title, tg_id in (await s.execute(q)).all():
            chan = channel_label(username, title, tg_id) if (username or title or tg_id) else None
            out.append(AlertRow(a.id, a.code, a.destination, a.kind, a.status, a.attempts, chan, mid,
                                [names.get(e, e) for e in a.entity_ids], list(a.also_in), a.created_at, a.sent_at,
                                a.next_attempt_at, a.last_error))
        return out
