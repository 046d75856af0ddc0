"""The few reads only the dashboard needs, beside the shared ones it calls directly (``monitor.archive`` for
mentions, search, stats and export; ``monitor.health.status_snapshot`` for channel health;
``monitor.alerts.outbox`` for the outbox). Each is one or two indexed queries: every page stays fast on a
million-post archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import arrivals
from monitor import models as m
from monitor.posts import channel_label, channel_subject, message_link


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A stored channel: its row id (the page URL), label, and the filter value the archive understands."""

    id: int
    label: str
    ref: str  # "@name", the numeric id, or the title: what --channel accepts
    subject: str  # how status_snapshot names it
    username: str | None
    title: str | None
    tg_id: int | None


async def channels(engine: AsyncEngine) -> list[ChannelRef]:
    """Every stored channel (a small table), ordered by label."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(m.Channel.id, m.Channel.username, m.Channel.title, m.Channel.tg_id))).all()
    out = [ChannelRef(cid, channel_label(u, t, g), f"@{u}" if u else str(g) if g is not None else (t or str(cid)),
                      channel_subject(u, g), u, t, g) for cid, u, t, g in rows]
    return sorted(out, key=lambda c: c.label.casefold())


@dataclass(frozen=True, slots=True)
class EntityRow:
    id: str
    name: str
    silent: bool
    posts: int  # posts mentioning it (the stats rollup)


async def entities(engine: AsyncEngine) -> list[EntityRow]:
    """Every stored entity with the number of posts mentioning it, most mentioned first (from the rollup)."""
    async with engine.connect() as conn:
        names = (await conn.execute(select(m.Entity.id, m.Entity.name, m.Entity.silent))).all()
        totals = dict((await conn.execute(select(m.MentionDay.entity_id, func.sum(m.MentionDay.posts))
                                          .group_by(m.MentionDay.entity_id))).all())
    rows = [EntityRow(eid, name, bool(silent), int(totals.get(eid) or 0)) for eid, name, silent in names]
    return sorted(rows, key=lambda e: (-e.posts, e.name.casefold()))


@dataclass(frozen=True, slots=True)
class PagePost:
    """What a feed card needs beyond the mention: the post's channel, version, text and its other channels."""

    channel_id: int
    version: int
    text: str
    also_in: list[str]


async def page_posts(engine: AsyncEngine, post_ids: Sequence[int], *, limit: int = 6) -> dict[int, PagePost]:
    """For a page of posts: channel, version, text, and the other channels carrying the same story — the same
    text (``text_hash``, which forwards share too) and, for a forward, the channel it came from when stored.
    Indexed lookups only: a page costs the same on a million posts."""
    if not post_ids:
        return {}
    async with engine.connect() as conn:
        page = (await conn.execute(
            select(m.Post.id, m.Post.channel_id, m.Post.version, m.Post.text, m.Post.text_hash,
                   m.Post.fwd_channel_id).where(m.Post.id.in_(list(post_ids))))).all()
        hashes = sorted({r.text_hash for r in page if r.text_hash})
        same = (await conn.execute(
            select(m.Post.text_hash, m.Post.channel_id).where(m.Post.text_hash.in_(hashes))
            .distinct().limit(5000))).all() if hashes else []
        chans = {cid: (u, t, g) for cid, u, t, g in (await conn.execute(
            select(m.Channel.id, m.Channel.username, m.Channel.title, m.Channel.tg_id))).all()}
    by_tg = {g: cid for cid, (_u, _t, g) in chans.items() if g is not None}
    by_hash: dict[str, list[int]] = {}
    for h, cid in same:
        by_hash.setdefault(cast(str, h), []).append(cid)
    out: dict[int, PagePost] = {}
    for p in page:
        others = list(by_hash.get(p.text_hash, [])) if p.text_hash else []
        if p.fwd_channel_id is not None and p.fwd_channel_id in by_tg:
            others.insert(0, by_tg[p.fwd_channel_id])  # the original of a forward first
        labels = dict.fromkeys(channel_label(*chans[c]) for c in others if c != p.channel_id and c in chans)
        out[p.id] = PagePost(p.channel_id, p.version, p.text, list(labels)[:limit])
    return out


async def alert_counts(engine: AsyncEngine) -> dict[str, int]:
    """Outbox rows per status (every status present, zero included)."""
    async with engine.connect() as conn:
        rows = dict((await conn.execute(select(m.Alert.status, func.count()).group_by(m.Alert.status))).all())
    return {s: int(rows.get(s, 0)) for s in ("pending", "sent", "failed", "silent")} | {
        k: int(v) for k, v in rows.items()}


# --------------------------------------------------------------------------------------------- channel


@dataclass(frozen=True, slots=True)
class PostRow:
    id: int
    message_id: int
    date: datetime
    text: str
    version: int
    deleted: bool
    views: int | None
    link: str


async def channel_posts(engine: AsyncEngine, ch: ChannelRef, *, before: int | None, limit: int
                        ) -> tuple[list[PostRow], int, bool]:
    """A page of the channel's posts, newest message first, after message id ``before`` (keyset on the
    (channel, message id) unique index); with the channel's post total and whether more follow."""
    async with engine.connect() as conn:
        q = (select(m.Post.id, m.Post.message_id, m.Post.date, m.Post.text, m.Post.version, m.Post.deleted,
                    m.Post.views).where(m.Post.channel_id == ch.id)
             .order_by(m.Post.message_id.desc()).limit(limit + 1))
        if before is not None:
            q = q.where(m.Post.message_id < before)
        rows = (await conn.execute(q)).all()
        total = int((await conn.execute(select(func.count()).select_from(m.Post)
                                        .where(m.Post.channel_id == ch.id))).scalar_one())
    posts = [PostRow(r.id, r.message_id, r.date, r.text, r.version, bool(r.deleted), r.views,
                     message_link(ch.username, ch.tg_id, r.message_id)) for r in rows[:limit]]
    return posts, total, len(rows) > limit


async def edited_posts(engine: AsyncEngine, ch: ChannelRef, *, limit: int) -> tuple[list[PostRow], int]:
    """The channel's edited posts (an earlier version is stored), most recently edited first, and how many."""
    async with engine.connect() as conn:
        last_edit = func.max(m.PostVersion.recorded_at).label("last_edit")
        base = (select(m.Post.id, m.Post.message_id, m.Post.date, m.Post.text, m.Post.version, m.Post.deleted,
                       m.Post.views, last_edit)
                .join(m.PostVersion, m.PostVersion.post_id == m.Post.id).where(m.Post.channel_id == ch.id)
                .group_by(m.Post.id, m.Post.message_id, m.Post.date, m.Post.text, m.Post.version, m.Post.deleted,
                          m.Post.views))
        rows = (await conn.execute(base.order_by(last_edit.desc()).limit(limit))).all()
        total = int((await conn.execute(select(func.count(func.distinct(m.PostVersion.post_id)))
                                        .join(m.Post, m.Post.id == m.PostVersion.post_id)
                                        .where(m.Post.channel_id == ch.id))).scalar_one())
    return [PostRow(r.id, r.message_id, r.date, r.text, r.version, bool(r.deleted), r.views,
                    message_link(ch.username, ch.tg_id, r.message_id)) for r in rows], total


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    text: str
    edit_date: datetime | None
    current: bool


async def post_versions(engine: AsyncEngine, ch: ChannelRef, message_id: int) -> tuple[PostRow, list[Version]] | None:
    """One post and every stored version of its text, oldest first (the current one last)."""
    async with engine.connect() as conn:
        r = (await conn.execute(select(m.Post.id, m.Post.message_id, m.Post.date, m.Post.text, m.Post.version,
                                       m.Post.deleted, m.Post.views, m.Post.edit_date)
                                .where(m.Post.channel_id == ch.id, m.Post.message_id == message_id))).first()
        if r is None:
            return None
        old = (await conn.execute(select(m.PostVersion.version, m.PostVersion.text, m.PostVersion.edit_date)
                                  .where(m.PostVersion.post_id == r.id).order_by(m.PostVersion.version))).all()
    post = PostRow(r.id, r.message_id, r.date, r.text, r.version, bool(r.deleted), r.views,
                   message_link(ch.username, ch.tg_id, r.message_id))
    versions = [Version(v.version, v.text, v.edit_date, False) for v in old if v.version != r.version]
    versions.append(Version(r.version, r.text, r.edit_date, True))
    return post, versions


# --------------------------------------------------------------------------------------------- latency


@dataclass(slots=True)
class Latency:
    """Post → alert delays of one channel over the window, in seconds (the figures ``status`` shows)."""

    channel: str
    alerts: int
    p50: float
    p95: float
    seen_p50: float | None = None  # from when we first had the post (``posts.seen_at``)
    seen_p95: float | None = None


def has_seen_at() -> bool:
    """Whether this schema records when a post was first seen (issue 12's ``posts.seen_at``)."""
    return "seen_at" in m.Post.__table__.c


async def alert_latency(engine: AsyncEngine, *, hours: int = 24) -> list[Latency]:
    """Per channel, the median and 95th percentile of post date → alert sent over the last ``hours`` (match
    alerts of posts that arrived live: an imported or backfilled old post is history, not a delay), and seen → sent: the
    part of the delay that is ours. The same computation as ``tgmonitor status``, labelled with titles."""
    by_key = await arrivals.alert_latency(engine, hours=hours)
    if not by_key:
        return []
    async with engine.connect() as conn:
        chans = (await conn.execute(select(m.Channel.username, m.Channel.title, m.Channel.tg_id))).all()
    labels = {channel_subject(u, g): channel_label(u, t, g) for u, t, g in chans}
    return sorted((Latency(labels.get(k, k), v.alerts, v.p50, v.p95, v.seen_p50, v.seen_p95)
                   for k, v in by_key.items()), key=lambda lat: lat.channel)


async def last_mention_day(engine: AsyncEngine, entity_id: str | None = None) -> date | None:
    """The newest UTC day with a mention (of one entity), from the rollup; None when there is none."""
    q = select(func.max(m.MentionDay.day)).where(m.MentionDay.posts > 0)
    if entity_id is not None:
        q = q.where(m.MentionDay.entity_id == entity_id)
    async with engine.connect() as conn:
        return (await conn.execute(q)).scalar()


def month_ago(today: date | None = None, days: int = 30) -> datetime:
    """Midnight UTC ``days - 1`` days before today: a whole-day range the stats rollup answers."""
    d = (today or datetime.now(UTC).date()) - timedelta(days=days - 1)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)
