"""The stats rollup: posts per (entity, channel, UTC day) whose current version mentions the entity.

``tgmonitor stats`` over a year of a million posts cannot join every match to its post in 200 ms, so
the store keeps this small table in step, in the same transaction as the matches it summarises:
+1 when a stored post (or an edit, or a rematch) starts mentioning an entity, -1 when it stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from monitor import models as m

Key = tuple[str, int, date]  # entity id, channel row id, UTC day


def utc_day(dt: datetime) -> date:
    """The UTC calendar day of an aware datetime (naive ones are taken as UTC)."""
    return (dt.astimezone(UTC) if dt.tzinfo else dt).date()


def count_change(deltas: dict[Key, int], channel_id: int, when: datetime, before: Iterable[str],
                 after: Iterable[str]) -> None:
    """Record that one post of ``channel_id`` at ``when`` went from mentioning ``before`` to ``after``."""
    b, a = set(before), set(after)
    if a == b:
        return
    day = utc_day(when)
    for eid in a - b:
        deltas[(eid, channel_id, day)] = deltas.get((eid, channel_id, day), 0) + 1
    for eid in b - a:
        deltas[(eid, channel_id, day)] = deltas.get((eid, channel_id, day), 0) - 1


async def apply(session: AsyncSession, deltas: Mapping[Key, int]) -> None:
    """Add the deltas to ``mention_days`` inside the caller's transaction (one upsert executemany)."""
    rows = [{"entity_id": e, "channel_id": c, "day": d, "posts": n} for (e, c, d), n in deltas.items() if n]
    if not rows:
        return
    ins = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert)(m.MentionDay)
    stmt = ins.on_conflict_do_update(index_elements=["entity_id", "channel_id", "day"],
                                     set_={"posts": m.MentionDay.posts + ins.excluded.posts})
    await session.execute(stmt, rows)
