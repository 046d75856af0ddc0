"""Telethon re-reads: the recent window of a channel read again by id (one ``channels.GetMessages`` per
channel) so that edits become new versions and posts gone from Telegram are marked deleted, and the
occasional comparison of Telegram's message count with the ids seen (a shortfall becomes an incident).
When they run is the poll's decision (:mod:`monitor.jobs.telethon`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from monitor import models as m
from monitor.config import ChannelConfig
from monitor.ingest import AlertRule
from monitor.jobs.base import PollReport
from monitor.jobs.telethon_base import BY_IDS, HISTORY, TelethonBase, log
from monitor.logs import event
from monitor.posts import Post
from monitor.sources.telethon import TelethonSource, album_post, to_post

#: At most this many message ids are re-read per channel (one channels.GetMessages request).
REREAD_MAX = 100


class RereadJobs(TelethonBase):
    """Edits, deletions and count gaps of the recent posts."""

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
