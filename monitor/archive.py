"""Read-only queries over the archive: mentions (full-text search and statistics come with the archive issue)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.posts import channel_label, message_link


@dataclass(frozen=True, slots=True)
class Mention:
    channel: str
    message_id: int
    date: datetime
    entity: str
    entity_id: str
    surface: str
    link: str
    start: int
    end: int
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "message_id": self.message_id, "date": self.date.isoformat(),
                "entity": self.entity, "surface": self.surface, "link": self.link}


async def iter_mentions(
    engine: AsyncEngine,
    *,
    entities: Sequence[str] = (),
    channels: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> AsyncIterator[Mention]:
    """Stored matches of the posts' current versions, newest first."""
    q = (
        select(m.Match.surface, m.Match.start, m.Match.end, m.Entity.name, m.Entity.id, m.Post.message_id,
               m.Post.date, m.Post.text, m.Channel.username, m.Channel.title, m.Channel.tg_id)
        .join(m.Post, m.Post.id == m.Match.post_id)
        .join(m.Channel, m.Channel.id == m.Post.channel_id)
        .join(m.Entity, m.Entity.id == m.Match.entity_id)
        .where(m.Match.version == m.Post.version)
        .order_by(m.Post.date.desc(), m.Post.message_id.desc(), m.Match.start)
    )
    if entities:
        q = q.where((m.Entity.name.in_(entities)) | (m.Entity.id.in_(entities)))
    if channels:
        names = [c.lower().lstrip("@") for c in channels]
        q = q.where((m.Channel.username.in_(names)) | (m.Channel.title.in_(channels)))
    if since is not None:
        q = q.where(m.Post.date >= since)
    if until is not None:
        q = q.where(m.Post.date < until)
    if limit is not None:
        q = q.limit(limit)
    async with engine.connect() as conn:
        result = await conn.stream(q)
        async for r in result:
            yield Mention(
                channel=channel_label(r.username, r.title, r.tg_id), message_id=r.message_id, date=r.date,
                entity=r.name, entity_id=r.id, surface=r.surface, link=message_link(r.username, r.tg_id, r.message_id),
                start=r.start, end=r.end, text=r.text,
            )
