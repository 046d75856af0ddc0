"""Correct the stored dates of posts from an old export that an earlier import read in the wrong zone.

Exports written before ``date_unixtime`` existed give each message the exporting computer's local time and
nothing else; an import reads it in ``--timezone`` (UTC by default). The store never changes a stored post's
date (a re-read is the same message), so importing such an export again with the right ``--timezone`` would
otherwise leave every date as wrong as before. Here the posts of a batch that carry ``raw["date_local"]``
(set by the export reader) are compared with their stored rows; a different date is written back, the edit
date moves by the same shift when it came from the same export, and the stats rollup (``mention_days``, one
count per entity, channel and UTC day) moves each mention from the old day to the new one through
:mod:`monitor.rollup`, all in one transaction, so ``stats`` agrees with the posts at every moment.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update

from monitor import models as m
from monitor import rollup
from monitor.posts import Post
from monitor.store import Store

#: rows read per query (well under SQLite's bound-parameter limit)
_CHUNK = 500


async def redate_posts(store: Store, channel_id: int, posts: Sequence[Post]) -> int:
    """Give stored posts of ``channel_id`` the dates ``posts`` carry, for posts dated by local time only
    (``raw["date_local"]``); returns how many stored posts changed. Posts not stored yet are left alone."""
    wanted = {p.message_id: p for p in posts if p.raw and "date_local" in p.raw}
    if not wanted:
        return 0
    async with store.sessions.begin() as s:
        ids = sorted(wanted)
        changed: list[tuple[int, int, m.Post]] = []  # (post row id, message id, stored row)
        for i in range(0, len(ids), _CHUNK):
            rows = await s.execute(select(m.Post).where(m.Post.channel_id == channel_id,
                                                        m.Post.message_id.in_(ids[i:i + _CHUNK])))
            changed.extend((row.id, row.message_id, row) for row in rows.scalars()
                           if row.date != wanted[row.message_id].date)
        if not changed:
            return 0
        entities: dict[int, set[str]] = {}
        pids = [pid for pid, _, _ in changed]
        for i in range(0, len(pids), _CHUNK):
            for pid, eid in await s.execute(select(m.Match.post_id, m.Match.entity_id)
                                            .where(m.Match.post_id.in_(pids[i:i + _CHUNK]))):
                entities.setdefault(pid, set()).add(eid)
        deltas: dict[rollup.Key, int] = {}
        for pid, mid, row in changed:
            post = wanted[mid]
            shift = post.date - row.date
            ents = entities.get(pid, set())
            # the mentions move from the old UTC day to the new one (a no-op when the day is the same)
            rollup.count_change(deltas, channel_id, row.date, ents, ())
            rollup.count_change(deltas, channel_id, post.date, (), ents)
            values: dict[str, object] = {"date": post.date}
            if post.edit_date is not None and row.edit_date is not None and row.edit_date + shift == post.edit_date:
                values["edit_date"] = post.edit_date  # the edit time came from the same export, in the same zone
            await s.execute(update(m.Post).where(m.Post.id == pid).values(**values))
        await rollup.apply(s, deltas)
        newest = (await s.execute(select(func.max(m.Post.date)).where(m.Post.channel_id == channel_id))).scalar()
        if newest is not None:
            await s.execute(update(m.Channel).where(m.Channel.id == channel_id).values(last_post_at=newest))
    return len(changed)
