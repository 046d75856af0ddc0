"""Telethon jobs: resolve channels once, poll them cheaply, re-read recent posts, backfill resumably.

How a cycle stays gentle with the account:
* a channel is resolved once (``contacts.ResolveUsername`` is the call Telegram punishes hardest); its id,
  access hash, title and username live in ``channels`` and later polls build the input peer from them;
* one ``messages.GetPeerDialogs`` per 100 channels tells the newest message id of every joined channel, so a
  quiet joined channel costs no request of its own and a quiet channel not joined costs one GetHistory;
* every request takes a token from the process-wide :class:`~monitor.budget.RequestBudget`; a flood wait
  refuses that request type until its "not before" time, the channels whose work needs it are deferred
  (``channels.not_before``) and the wait is recorded in ``flood_waits`` — a poll never sleeps it out.

Every page of messages is stored with its matches, outbox rows and the channel's new cursor (or backfill
low-water mark) in one transaction through ``rt.ingestor``: a crash repeats nothing and loses nothing.

This module holds the poll and the class the service uses, :class:`TelethonJobs`; the session, budget,
resolution and incidents are in :mod:`monitor.jobs.telethon_base`, re-reads in
:mod:`monitor.jobs.telethon_rereads`, backfill in :mod:`monitor.jobs.telethon_backfill`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import update
from telethon import errors

from monitor import models as m
from monitor.budget import Deferred
from monitor.config import ChannelConfig
from monitor.ingest import AlertRule
from monitor.jobs.base import PollReport, SessionDead
from monitor.jobs.telethon_backfill import BackfillJobs
from monitor.jobs.telethon_base import (
    DIALOGS,
    HISTORY,
    SystemClock,
    Unavailable,
    build_budget,
    log,
    telegram_budget,
    unavailable_reason,
)
from monitor.jobs.telethon_rereads import REREAD_MAX, RereadJobs
from monitor.logs import event
from monitor.sources.telethon import (
    ALBUM_SETTLE,
    PAGE,
    UNAVAILABLE_ERRORS,
    TelegramUnreachable,
    TelethonSource,
    leading_group,
    newest_date,
    trailing_group,
)

__all__ = ["COUNT_CHECK_EVERY", "DIALOG_BATCH", "REREAD_MAX", "SystemClock", "TelethonJobs", "build_budget",
           "telegram_budget"]

#: Channels per messages.GetPeerDialogs request.
DIALOG_BATCH = 100
#: A channel's newest id learnt this recently (push probe or push) spares a poll its GetPeerDialogs.
TOPS_FRESH = 90.0
#: The server-count comparison runs on every this-many-th re-read: a gap is rare and slow to matter, while
#: a request per re-read doubled the cost of a cycle in which every channel had posted recently.
COUNT_CHECK_EVERY = 10


class TelethonJobs(BackfillJobs, RereadJobs):
    """:class:`~monitor.jobs.SourceJobs` for Telegram through Telethon."""

    source = "telethon"

    # ------------------------------------------------------------------ poll

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport]:
        """Fetch every message newer than each channel's cursor; see the module docstring for the costs."""
        reports = [PollReport(channel=c.key) for c in channels]
        try:
            src = await self._open()
        except (SessionDead, TelegramUnreachable):
            raise  # the caller decides: stop the Telethon jobs, or retry the connection later
        except errors.RPCError as exc:
            for r in reports:
                r.error = f"Telegram refused the connection: {exc.message}"
            return reports
        now = self.clock.now()
        rows = await self._rows()
        work: list[tuple[ChannelConfig, m.Channel, PollReport]] = []
        for cfg, rep in zip(channels, reports, strict=True):
            row = rows.find(cfg)
            if row is not None and row.not_before is not None and row.not_before > now:
                rep.deferred_until = row.not_before
                rep.unavailable = row.status == "unavailable"
                continue
            if row is None or row.tg_id is None or row.access_hash is None:
                before = self.requests
                try:
                    row = await self._adopt(cfg, row, await self._resolve(cfg))
                except Unavailable as exc:
                    await self._mark_unavailable(cfg, row, exc.reason, rep)
                    continue
                except Deferred as d:
                    await self._defer(cfg, row, rep, d)
                    continue
                except (SessionDead, TelegramUnreachable):
                    raise
                except Exception as exc:
                    await self._failed(cfg, row, rep, exc)
                    continue
                finally:
                    rep.requests += self.requests - before
            elif row.config_ref != cfg.key:
                await self.store.update_channel(row.id, config_ref=cfg.key)
            work.append((cfg, row, rep))

        tops = await self._dialog_tops(src, work)
        quiet: list[int] = []
        for cfg, row, rep in work:
            before = self.requests
            started = self.clock.now()
            try:
                did = await self._poll_guarded(src, cfg, row, rep, tops.get(row.tg_id or 0))
                if self.push is not None and row.tg_id is not None:
                    self.push.polled(row.tg_id, 0)  # a channel that fell back to polling has been polled
            except Deferred as d:
                await self._defer(cfg, row, rep, d)
                did = True
            except Unavailable as exc:
                await self._mark_unavailable(cfg, row, exc.reason, rep)
                did = True
            except (SessionDead, TelegramUnreachable):
                raise  # work stored so far is committed; the cursor makes the retry continue from there
            except Exception as exc:
                await self._failed(cfg, row, rep, exc)
                did = True
            rep.requests += self.requests - before
            if did:
                await self.store.record_run(row.id, "poll", started, posts=rep.new, requests=rep.requests,
                                            error=rep.error)
            if rep.deferred_until is None and rep.error is None:
                quiet.append(row.id)
        if quiet:
            # one statement for every channel polled without trouble (500 quiet channels: one write)
            async with self.store.sessions.begin() as s:
                await s.execute(update(m.Channel).where(m.Channel.id.in_(quiet))
                                .values(polls=m.Channel.polls + 1, last_poll_at=now, last_error=None))
        return reports


    async def _dialog_tops(self, src: TelethonSource,
                           work: Sequence[tuple[ChannelConfig, m.Channel, PollReport]]) -> dict[int, int]:
        """Newest message ids of the joined channels, 100 channels a request; failures just mean "unknown".
        Channels whose newest id the push receiver learnt within TOPS_FRESH (its probe, or a push) cost nothing:
        a reconciling poll of a channel push keeps up with asks Telegram nothing at all."""
        tops: dict[int, int] = {}
        fresh_after = self.clock.monotonic() - TOPS_FRESH
        rows = []
        for _, row, _ in work:
            known = self.tops_known.get(row.tg_id or 0)
            if known is not None and known[1] >= fresh_after and row.baseline_id is not None:
                tops[row.tg_id or 0] = known[0]
            elif row.baseline_id is not None:
                rows.append(row)
        for i in range(0, len(rows), DIALOG_BATCH):
            batch = rows[i:i + DIALOG_BATCH]
            peers = [src.peer(r.tg_id or 0, r.access_hash or 0) for r in batch]
            try:
                got, infos = await self._call(DIALOGS, partial(src.dialog_tops, peers))
            except (SessionDead, TelegramUnreachable):
                raise
            except (Deferred, errors.RPCError) as exc:
                # not fatal: these channels are asked with GetHistory instead
                event(log, logging.DEBUG, "GetPeerDialogs failed", error=type(exc).__name__)
                continue
            tops.update(got)
            by_id = {r.tg_id: r for r in batch}
            for info in infos:
                r = by_id.get(info.id)
                if r is not None and (info.username != r.username or (info.title and info.title != r.title)):
                    await self._follow(r, info)
        return tops

    async def _poll_guarded(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                            top: int | None) -> bool:
        """Poll; Telegram's "this channel cannot be read" errors make it unavailable — except a stale access
        hash (CHANNEL_INVALID), which earns one fresh resolution by username first."""
        try:
            return await self._poll_channel(src, cfg, row, rep, top)
        except UNAVAILABLE_ERRORS as exc:
            if not (isinstance(exc, errors.ChannelInvalidError) and cfg.username):
                raise Unavailable(unavailable_reason(exc)) from None
        event(log, logging.INFO, "stored access hash refused; resolving again", channel=cfg.key)
        row = await self._adopt(cfg, row, await self._resolve(cfg))
        try:
            return await self._poll_channel(src, cfg, row, rep, top)
        except UNAVAILABLE_ERRORS as exc:
            raise Unavailable(unavailable_reason(exc)) from None

    async def _poll_channel(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                            top: int | None) -> bool:
        """One channel's poll; False when it was quiet and cost nothing."""
        peer = src.peer(row.tg_id or 0, row.access_hash or 0)
        did = False
        if row.baseline_id is None and not row.cursor:
            await self._first_poll(src, cfg, row, rep, peer)
            did = True
        elif top is None or top > (row.cursor or 0):
            seen_top = await self._fetch_new(src, cfg, row, rep, peer, top)
            if row.baseline_id is None:
                # stored before (a backfill, a crash before the baseline was written): nothing fetched now
                # alerted; the baseline is the newest id this first poll saw
                await self.store.set_baseline(row.id, max(seen_top, row.cursor or 0))
            did = True
        if self._due(row):
            fresh = await self.store.get_channel(row.id)
            await self._reread(src, cfg, fresh, rep, peer)
            if self._count_due(row):
                await self._count_check(src, cfg, await self.store.get_channel(row.id), peer)
            did = True
        if did and row.status != "active":
            await self.store.update_channel(row.id, status="active", status_reason=None,
                                            status_changed_at=self.clock.now())
            await self._close_incident("channel_unavailable", cfg.key)
        return did

    def _due(self, row: m.Channel) -> bool:
        """Re-read (and count check) every ``reread_every`` polls, staggered by channel so that a cycle never
        re-reads every channel at once; never for a channel with no post inside the window."""
        sch = self.settings.schedule
        if sch.reread_hours <= 0 or row.baseline_id is None or row.last_post_at is None:
            return False
        if row.last_post_at < self.clock.now() - timedelta(hours=sch.reread_hours):
            return False
        return (row.polls + 1 + row.id) % sch.reread_every == 0

    def _count_due(self, row: m.Channel) -> bool:
        """On a re-read poll: is it also time to compare the stored count with the server's?"""
        return (row.polls + 1 + row.id) % (self.settings.schedule.reread_every * COUNT_CHECK_EVERY) == 0

    async def _first_poll(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                          peer: Any) -> None:
        """The newest page only: stored (alerting only with ``alert_history``), the baseline set at its top."""
        page = await self._call(HISTORY, lambda: src.history_before(peer, 0, PAGE))
        if page.chat is not None:
            row = await self._follow(row, page.chat)
        msgs = sorted(page.messages, key=lambda x: x.id)
        if not msgs:
            await self.store.set_baseline(row.id, 0)
            await self.store.update_channel(row.id, backfill_done=True)
            return
        top = msgs[-1].id
        complete = len(page.messages) < PAGE  # the whole history fitted in one page
        if not complete:
            # the oldest album may continue below the page: leave it to the backfill, whole
            msgs = msgs[leading_group(msgs):]
        keep = len(msgs) - self._hold_back(msgs)
        commit = msgs[:keep]
        if commit:
            posts = await self._posts(row, commit)
            res = await self.rt.ingestor.ingest(row, posts, rule=AlertRule(alert_history=cfg.alert_history),
                                                arrival=self._arrival(row, posts, reconciling=False),
                                                cursor=commit[-1].id, seen=len(commit), backfill_low=commit[0].id)
            rep.new += res.new
            rep.alerts += res.alerts
        await self.store.set_baseline(row.id, top)
        if complete and keep == len(msgs):
            await self.store.update_channel(row.id, backfill_done=True)

    def _hold_back(self, msgs: Sequence[Any]) -> int:
        """How many trailing messages to leave for the next poll: an album whose newest part is so recent
        that more of it may still be arriving (it is then stored whole, once)."""
        n = trailing_group(msgs)
        if n == 0:
            return 0
        newest = newest_date(msgs[-n:])
        if newest is not None and newest > self.clock.now() - ALBUM_SETTLE:
            return n
        return 0

    async def _fetch_new(self, src: TelethonSource, cfg: ChannelConfig, row: m.Channel, rep: PollReport,
                         peer: Any, top: int | None) -> int:
        """Page oldest first from the cursor; each page stored with the new cursor in one transaction.
        Returns the highest id seen."""
        rule = AlertRule(alert_history=cfg.alert_history)
        fetch_from = row.cursor or 0
        highest = fetch_from
        carry: list[Any] = []
        while True:
            page = await self._call(HISTORY, partial(src.history_after, peer, fetch_from, PAGE))
            if page.chat is not None:
                row = await self._follow(row, page.chat)
            got = [x for x in page.messages if x.id > fetch_from]
            if got:
                fetch_from = max(x.id for x in got)
                highest = max(highest, fetch_from)
            msgs = carry + got
            # Telethon emulates min_id on the client: a page shorter than asked is the end only when Telegram's
            # newest id (from the dialog) agrees; otherwise ask again rather than skip a page
            more = bool(got) and (len(page.messages) >= PAGE or (top is not None and fetch_from < top))
            hold = trailing_group(msgs) if more else self._hold_back(msgs)
            if hold >= len(msgs) and more:
                carry = msgs
                continue
            commit, carry = msgs[:len(msgs) - hold], msgs[len(msgs) - hold:]
            if commit:
                posts = await self._posts(row, commit)
                arrival = self._arrival(row, posts)
                res = await self.rt.ingestor.ingest(row, posts, rule=rule, cursor=commit[-1].id, seen=len(commit),
                                                    arrival=arrival)
                if self.push is not None and row.tg_id is not None and arrival.push_missed:
                    self.push.polled(row.tg_id, self._missed_stored(arrival, res))
                rep.new += res.new
                rep.edited += res.edited
                rep.alerts += res.alerts
                row.cursor = commit[-1].id
            if not more:
                break
        if top is not None and highest < top:
            detail = (f"Telegram's newest message is {top} but history paging stopped at {highest}: "
                      "messages may be missing")
            if await self._open_incident("poll_gap", cfg.key, detail):
                event(log, logging.WARNING, "poll gap", channel=cfg.key, top=top, reached=highest)
        elif top is not None:
            # paging reached Telegram's newest message: a gap reported by an earlier poll is closed
            await self._close_incident("poll_gap", cfg.key)
        return highest
