"""Telethon backfill: walk a channel's history backwards from where the last backfill stopped, a page at a
time, each page stored with the new low-water mark in one transaction, so that a backfill killed at any point
continues where it stopped; flood waits short enough are waited out."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from monitor import models as m
from monitor.budget import Deferred
from monitor.config import ChannelConfig
from monitor.ingest import AlertRule
from monitor.jobs.base import PollReport, Progress
from monitor.jobs.telethon_base import HISTORY, TelethonBase, Unavailable, unavailable_reason
from monitor.sources.telethon import PAGE, UNAVAILABLE_ERRORS, TelethonSource, leading_group


class BackfillJobs(TelethonBase):
    """The resumable walk back through a channel's history."""

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
                raise Unavailable(unavailable_reason(exc)) from None
        except Unavailable as exc:
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
            page = await self._call(HISTORY, partial(src.history_before, peer, low or 0, PAGE), wait_floods=True)
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
            res = await self.rt.ingestor.ingest(row, posts, rule=rule, seen=len(msgs), backfill_low=new_low,
                                                arrival=self._arrival(row, posts, "backfill"))
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
