"""The stats rollup: posts per (entity, channel, UTC day) whose current version mentions the entity.

``tgmonitor stats`` over a year of a million posts cannot join every match to its post in 200 ms, so
the store keeps this small table in step, in the same transaction as the matches it summarises:
+1 when a stored post (or an edit, or a rematch) starts mentioning an entity, -1 when it stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from monitor import models as m
from monitor.db import bind_rows, driver_connection, sqlite_insert

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


_COLUMNS = ("entity_id", "channel_id", "day", "posts")
_UPSERT = ("ON CONFLICT (entity_id, channel_id, day) DO UPDATE SET posts = mention_days.posts + excluded.posts")


async def apply(session: AsyncSession, deltas: Mapping[Key, int]) -> None:
    """Add the deltas to ``mention_days`` inside the caller's transaction: one upsert statement (straight
    to the driver; a batch's few hundred rows one by one through SQLAlchemy cost more than the writing)."""
    rows = [(e, c, d, n) for (e, c, d), n in deltas.items() if n]
    if not rows:
        return
    table: Table = m.MentionDay.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect
    values = bind_rows(dialect, table, _COLUMNS, rows)
    drv = await driver_connection(session)
    if dialect.name == "sqlite":
        await sqlite_insert(drv, "INSERT INTO mention_days (entity_id, channel_id, day, posts)", values, _UPSERT)
        return
    await drv.execute("INSERT INTO mention_days (entity_id, channel_id, day, posts) SELECT * FROM "
                      f"unnest($1::varchar[], $2::int[], $3::date[], $4::int[]) {_UPSERT}",
                      *(list(col) for col in zip(*values, strict=True)))
