"""Re-run the watchlist over stored posts after it changed, so the archive answers for new entities.

Reads posts in chunks, matches them in a worker thread (pure CPU, off the event loop) and writes the
changed ones through :meth:`monitor.store.Store.replace_matches`: no fetching, no outbox rows, no alerts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from monitor import models as m
from monitor.archive import Filters, post_conditions, resolve_filters
from monitor.matching import Match, Watchlist
from monitor.runtime import Runtime
from monitor.store import Rematch

_Key = tuple[str, int, int, str, bool]  # entity, start, end, surface, in preview


@dataclass(slots=True)
class RematchReport:
    """What a rematch changed: posts read and updated, matches added and removed, per entity (net)."""

    posts: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    by_entity: Counter[str] = field(default_factory=Counter)  # entity name -> matches added minus removed

    def as_dict(self) -> dict[str, object]:
        return {"posts": self.posts, "changed": self.changed, "added": self.added, "removed": self.removed,
                "by_entity": dict(self.by_entity)}


def _keys(matches: list[Match], in_preview: bool) -> set[_Key]:
    return {(mt.entity_id, mt.start, mt.end, mt.surface[:512], in_preview) for mt in matches}


async def rematch(
    rt: Runtime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    channels: tuple[str, ...] = (),
    chunk: int = 1000,
    progress: Callable[[RematchReport], None] | None = None,
) -> RematchReport:
    """Match every stored post in the range again with ``rt.watchlist`` and store what differs."""
    report = RematchReport()
    watchlist: Watchlist = rt.watchlist
    previews = rt.ingestor.match_link_previews
    async with rt.engine.connect() as conn:
        r = await resolve_filters(conn, Filters((), channels, since, until))
        names = dict((await conn.execute(select(m.Entity.id, m.Entity.name))).all())
    base = (select(m.Post.id, m.Post.version, m.Post.text, m.Post.link_preview)
            .where(*post_conditions(r)).order_by(m.Post.id).limit(chunk))
    last = 0
    while True:
        async with rt.engine.connect() as conn:
            posts = (await conn.execute(base.where(m.Post.id > last))).all()
            if not posts:
                break
            old: dict[int, set[_Key]] = {}
            versions = {p.id: p.version for p in posts}
            rows = await conn.execute(select(m.Match.post_id, m.Match.version, m.Match.entity_id, m.Match.start,
                                             m.Match.end, m.Match.surface, m.Match.in_preview)
                                      .where(m.Match.post_id.in_(list(versions))))
            for pid, ver, eid, start, end, surface, in_preview in rows:
                if ver == versions[pid]:
                    old.setdefault(pid, set()).add((eid, start, end, surface, bool(in_preview)))
        last = posts[-1].id

        def match_chunk(ps: Sequence[Any] = posts) -> list[tuple[int, int, list[Match], list[Match]]]:
            return [(p.id, p.version, watchlist.find(p.text) if p.text else [],
                     watchlist.find(p.link_preview) if previews and p.link_preview else []) for p in ps]

        changes: list[Rematch] = []
        for pid, ver, found, found_preview in await asyncio.to_thread(match_chunk):
            new = _keys(found, False) | _keys(found_preview, True)
            before = old.get(pid, set())
            if new == before:
                continue
            changes.append(Rematch(pid, ver, found, found_preview))
            for key in new - before:
                report.by_entity[names.get(key[0], key[0])] += 1
            for key in before - new:
                report.by_entity[names.get(key[0], key[0])] -= 1
            report.added += len(new - before)
            report.removed += len(before - new)
        report.posts += len(posts)
        report.changed += await rt.store.replace_matches(changes)
        if progress is not None:
            progress(report)
    return report
