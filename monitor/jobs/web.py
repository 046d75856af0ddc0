"""Poll and backfill public channels through their web preview (``source = "web"``), no account needed.

Semantics match the Telethon jobs: a channel's first successful poll stores the newest page and sets the
baseline at the newest visible id (only higher ids alert); later polls read the newest page and page back
with ``?before=`` until they reach the cursor, so a burst of posts longer than a page is never skipped,
and store everything they read in ONE transaction (a failure half-way stores nothing, and the next poll
starts again from the top: nothing is lost, nothing repeats). Re-reading the newest page also catches
edits: a changed text becomes a new version. ``backfill`` walks the history down page by page, each page
its own transaction with the lowest id reached, so an interrupted backfill resumes where it stopped.

A bad answer (a captcha or error page, another channel's page, a page cut short) is a transient error of
that poll: nothing of it is stored and the channel is polled again at its next turn, never marked
unavailable. A post the page shows but that cannot be read holds the cursor below it: it and the posts
after it wait for the next poll rather than being passed over. When the site cannot be reached at all,
:class:`~monitor.sources.web.WebUnreachable` leaves ``poll`` after the channel that met it is recorded (the
other channels would only wait out the same retries), as the Telethon jobs do when Telegram is down.

Adaptive intervals (issue 12): every poll reads the newest page, whose posts' dates tell how often the channel
posts; :class:`WebPace` turns that into each channel's next interval — a channel that posts often is polled
more often, down to ``[sources.web] min_interval``, a quiet one backs off to its configured interval — within
``[sources.web] requests_per_minute``: the planned polls never need more than ``PLAN_SHARE`` of it (the rest
is headroom for paging back through a burst and for backfills), and the source's token bucket refuses any
request beyond it whatever the plan says.

A forward's origin on the page is a username (``t.me/<name>/<id>``); when a stored channel of that username
has a Telegram id, the origin is given that id too, so a forward seen on the web and one seen through
Telethon are one story for the alert de-duplication.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor import models as m
from monitor.config import ChannelConfig
from monitor.ingest import AlertRule, Arrival
from monitor.jobs.base import PollReport, Progress
from monitor.logs import event
from monitor.posts import ForwardOrigin, Post
from monitor.sources.web import ChannelUnavailable, RateLimited, WebClient, WebSourceError, WebUnreachable
from monitor.sources.web_parse import WebPage

if TYPE_CHECKING:
    from monitor.runtime import Runtime

log = logging.getLogger(__name__)

#: a poll never reads more pages than this (20 posts each on t.me); past it, ``backfill`` fills the gap
MAX_POLL_PAGES = 100
#: a first poll of a channel with stored history pages back at most this far (the rest is backfill's job)
FIRST_POLL_PAGES = 10
#: a poll waits this long at most for the budget or a Retry-After, else the channel is deferred
POLL_MAX_WAIT = 30.0
#: a backfill (an operator waiting at a terminal) waits longer before it stops, resumable
BACKFILL_MAX_WAIT = 300.0
#: an unavailable channel is retried this much later
UNAVAILABLE_RETRY = timedelta(hours=1)


#: the share of ``[sources.web] requests_per_minute`` the adaptive intervals may plan polls for
PLAN_SHARE = 0.8
#: how far back the newest page's posts count towards a channel's posting rate
RATE_WINDOW = timedelta(hours=6)


def _now() -> datetime:
    return datetime.now(UTC)


def posting_rate(dates: Sequence[datetime], now: datetime, window: timedelta = RATE_WINDOW) -> float:
    """Posts per second from the dates of a channel's newest posts (its newest page): the posts within
    ``window``, over the time they span when the page holds nothing older (a busy channel), else over the
    whole window."""
    if not dates:
        return 0.0
    recent = [d for d in dates if d > now - window]
    if not recent:
        return 0.0
    if len(recent) == len(dates) and len(recent) > 1:
        span = (now - min(recent)).total_seconds()
        return len(recent) / max(span, 1.0)
    return len(recent) / window.total_seconds()


def plan_intervals(rates: Mapping[str, float], base: Mapping[str, float], min_interval: float,
                   requests_per_minute: float) -> dict[str, float]:
    """Each channel's poll interval in seconds: its configured one (``base``), shortened for a channel that
    posts more often than that — towards one poll per new post, never below ``min_interval`` — as far as the
    spare budget allows. The planned polls per minute never exceed ``PLAN_SHARE`` of ``requests_per_minute``
    (nor what the configured intervals need, when that is more already)."""
    out = dict(base)
    budget = PLAN_SHARE * requests_per_minute
    spare = budget - sum(60.0 / b for b in base.values() if b > 0)
    if spare <= 0:
        return out
    extra: dict[str, float] = {}
    for key, b in base.items():
        rate = rates.get(key, 0.0)
        if rate <= 0 or b <= min_interval:
            continue
        want = min(b, max(float(min_interval), 1.0 / rate))
        if want < b:
            extra[key] = 60.0 / want - 60.0 / b  # the polls per minute this shortening costs
    total = sum(extra.values())
    if total <= 0:
        return out
    share = min(1.0, spare / total)  # not enough spare budget: every busy channel gets the same part of it
    for key, e in extra.items():
        out[key] = 60.0 / (60.0 / base[key] + e * share)
    return out


@dataclass(slots=True)
class WebPace:
    """Adaptive intervals of the web channels (see the module docstring): the posting rate each poll sees."""

    rates: dict[str, float] = field(default_factory=dict)
    version: int = 0  # moves whenever a rate changes (the service's cached plan is stale then)
    _plan: tuple[object, dict[str, float]] | None = None  # (what it was computed from, the plan)

    def observe(self, key: str, page: WebPage, now: datetime) -> None:
        """A poll read ``page`` (the newest one) of channel ``key``."""
        self.rates[key] = posting_rate([p.date for p in page.posts], now)
        self.version += 1
        self._plan = None

    def intervals(self, channels: Mapping[str, ChannelConfig], interval: int, min_interval: int,
                  requests_per_minute: int) -> dict[str, float]:
        """The interval of each of ``channels`` (every web channel polled here: they share the budget);
        computed again only when a rate, the channels or the settings changed."""
        base = {k: float(c.interval if c.interval is not None else interval) for k, c in channels.items()}
        key = (tuple(sorted(base.items())), min_interval, requests_per_minute)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, plan_intervals(self.rates, base, min_interval, requests_per_minute))
        return self._plan[1]


class WebJobs:
    """:class:`monitor.jobs.SourceJobs` for the web preview."""

    source = "web"

    def __init__(self, rt: Runtime, *, client: WebClient | None = None) -> None:
        self.rt = rt
        self.client = client or WebClient(rt.settings.web)
        self.pace = WebPace()

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ helpers

    async def _row(self, channel: ChannelConfig) -> m.Channel:
        if not channel.username:
            raise ValueError(f"{channel.key}: the web source needs the channel's public username")
        return await self.rt.store.upsert_channel(username=channel.username, tg_id=channel.id, source="web")

    async def _unavailable(self, row: m.Channel, reason: str) -> None:
        values: dict[str, object] = {"status": "unavailable", "status_reason": reason, "last_error": reason,
                                     "not_before": _now() + UNAVAILABLE_RETRY, "last_poll_at": _now()}
        if row.status != "unavailable":
            values["status_changed_at"] = _now()
            event(log, logging.WARNING, "channel unavailable", channel=f"@{row.username}", reason=reason)
        await self.rt.store.update_channel(row.id, **values)

    def _available(self, row: m.Channel, page: WebPage) -> dict[str, object]:
        values: dict[str, object] = {"last_error": None, "not_before": None}
        if row.status != "active":
            values.update(status="active", status_reason=None, status_changed_at=_now())
        if page.title and page.title != row.title:
            values["title"] = page.title
        return values

    # ------------------------------------------------------------------ poll

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport]:
        """Poll each channel once; one channel's trouble never stops the others. An unreachable site
        (:class:`WebUnreachable`) ends the round: the others would fail the same way."""
        reports = []
        for c in channels:
            try:
                reports.append(await self.poll_one(c))
            except ValueError as exc:
                reports.append(PollReport(channel=c.key, error=str(exc)))
        return reports

    async def poll_one(self, channel: ChannelConfig) -> PollReport:
        """Fetch every post newer than the cursor (the first poll: the newest page, setting the baseline)."""
        started = _now()
        row = await self._row(channel)
        report = PollReport(channel=channel.key)
        if row.not_before is not None and row.not_before > started:
            report.deferred_until = row.not_before
            report.unavailable = row.status == "unavailable"
            return report
        req0 = self.client.requests
        pages: list[WebPage] = []
        try:
            page = await self.client.page(row.username or "", max_wait=POLL_MAX_WAIT)
            pages.append(page)
            if row.baseline_id is not None:
                await self._page_back(row, pages, MAX_POLL_PAGES)
            elif row.cursor:
                # First poll of a channel with stored history (a backfill or an import): close the gap
                # below the newest page too, within reason; none of it alerts (it is below the baseline).
                await self._page_back(row, pages, FIRST_POLL_PAGES)
        except ChannelUnavailable as exc:
            await self._unavailable(row, str(exc))
            report.unavailable, report.error = True, str(exc)
        except RateLimited as exc:
            # Nothing of this poll is stored: the next one starts from the top again and loses nothing.
            until = _now() + timedelta(seconds=exc.seconds)
            await self.rt.store.update_channel(row.id, not_before=until, last_error=str(exc))
            report.deferred_until, report.error = until, str(exc)
        except WebSourceError as exc:
            # A bad page or a 4xx: this poll failed, the channel is not unavailable; the next poll retries.
            await self.rt.store.update_channel(row.id, last_error=str(exc), last_poll_at=_now())
            report.error = str(exc)
            if isinstance(exc, WebUnreachable):
                report.requests = self.client.requests - req0
                await self.rt.store.record_run(row.id, "poll", started, requests=report.requests, error=str(exc))
                raise
        report.requests = self.client.requests - req0
        if report.error is not None:
            await self.rt.store.record_run(row.id, "poll", started, requests=report.requests, error=report.error)
            return report

        self.pace.observe(channel.key, pages[0], _now())
        visible = max((i for p in pages for i in (*p.ids, *p.unreadable)), default=0)
        if row.baseline_id is None and visible:
            # The first successful poll: what is visible now is history; only higher ids will alert.
            await self.rt.store.set_baseline(row.id, visible)
            row.baseline_id = visible
        posts = _merge(pages)
        cursor = row.cursor or 0
        ids = {i for p in pages for i in p.ids}
        newest = max(ids, default=0)
        unreadable = sorted(i for p in pages for i in p.unreadable if i > cursor)
        held = ""
        if unreadable:
            # The cursor must not pass a post that is not stored: keep it below the first unreadable one,
            # and leave the posts above it to the next poll (stored then, none lost, none alerted twice).
            hold = unreadable[0]
            posts = [p for p in posts if max(p.ids) < hold]
            ids = {i for i in ids if i < hold}
            newest = max([i for i in ids if i > cursor], default=0)
            held = (f"post {hold} of @{row.username} could not be read (no date in its markup): it and the "
                    f"posts after it wait for the next poll")
            event(log, logging.WARNING, "web preview post unreadable", channel=f"@{row.username}", post=hold)
        posts = await self._forward_ids(posts)
        rule = AlertRule(force=None, alert_history=channel.alert_history)
        res = await self.rt.ingestor.ingest(row, posts, rule=rule, cursor=newest or None,
                                            seen=sum(1 for i in ids if i > cursor), arrival=Arrival("web"))
        report.new, report.edited, report.alerts = res.new, res.edited, res.alerts
        values = self._available(row, pages[0])
        values.update(polls=(row.polls or 0) + 1, last_poll_at=_now())
        if held:
            values["last_error"] = report.error = held
        await self.rt.store.update_channel(row.id, **values)
        await self.rt.store.record_run(row.id, "poll", started, posts=len(posts), requests=report.requests)
        return report

    async def _forward_ids(self, posts: list[Post]) -> list[Post]:
        """Forwards whose origin the page names by username get the Telegram id of a stored channel of that
        username, when it has one (one query per distinct username of the batch)."""
        names = {p.forward.username for p in posts
                 if p.forward is not None and p.forward.username and p.forward.channel_id is None}
        ids: dict[str, int] = {}
        for name in sorted(names):
            row = await self.rt.store.find_channel(username=name)
            if row is not None and row.tg_id is not None:
                ids[name] = row.tg_id
        if not ids:
            return posts
        out = []
        for p in posts:
            f = p.forward
            if f is not None and f.username in ids and f.channel_id is None:
                p = replace(p, forward=ForwardOrigin(channel_id=ids[f.username], message_id=f.message_id,
                                                     name=f.name, username=f.username))
            out.append(p)
        return out

    async def _page_back(self, row: m.Channel, pages: list[WebPage], max_pages: int) -> None:
        """Read older pages until one reaches the cursor (or the channel's start)."""
        cursor = row.cursor or 0
        visited: set[int] = set()
        prev: int | None = None  # the ?before= of the last page read: each next one must be lower
        while True:
            page = pages[-1]
            oldest = page.oldest_id
            if oldest is None or oldest <= cursor + 1 or page.before is None:
                return
            before = page.before
            # (not "before > oldest": an album's widget may carry a higher id than a member it shows)
            if before in visited or (prev is not None and before >= prev):
                event(log, logging.WARNING, "web preview paging loops; stopping", channel=f"@{row.username}",
                      before=before)
                return
            if len(pages) >= max_pages:
                event(log, logging.WARNING, "more new posts than a poll reads; run tgmonitor backfill for the rest",
                      channel=f"@{row.username}", pages=len(pages), cursor=cursor, oldest=oldest)
                return
            visited.add(before)
            prev = before
            pages.append(await self.client.page(row.username or "", before=before, max_wait=POLL_MAX_WAIT))

    # ------------------------------------------------------------------ backfill

    async def backfill(
        self,
        channel: ChannelConfig,
        *,
        since: datetime | None = None,
        limit: int | None = None,
        alert: bool = False,
        progress: Progress | None = None,
    ) -> PollReport:
        """Walk the history down, one stored page (one transaction) at a time; resumable.

        A backfill that stopped part-way resumes below the lowest id it reached. A channel whose history
        is complete is walked from the top down to its cursor only (new posts, edits on the newest page).
        On a polled channel (it has a baseline) posts above the cursor are left to the poller, so they
        alert as new posts do. ``since`` stops at older posts, ``limit`` after that many posts."""
        started = _now()
        row = await self._row(channel)
        report = PollReport(channel=channel.key)
        rule = AlertRule(force=alert)
        polled = row.baseline_id is not None
        cursor = row.cursor or 0
        if row.backfill_done:
            if polled:
                report.error = None
                await self.rt.store.record_run(row.id, "backfill", started)
                return report  # the history is complete and the poller covers the top
            before, floor = None, cursor  # walk down to what is stored
        elif row.backfill_low is not None:
            before, floor = row.backfill_low, 0
        else:
            before, floor = (cursor + 1 if polled and cursor else None), 0
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        req0 = self.client.requests
        stored = 0
        total: int | None = limit
        complete = False
        visited: set[int] = set()
        last: WebPage | None = None
        while True:
            try:
                page = await self.client.page(row.username or "", before=before, max_wait=BACKFILL_MAX_WAIT)
            except ChannelUnavailable as exc:
                await self._unavailable(row, str(exc))
                report.unavailable, report.error = True, str(exc)
                break
            except RateLimited as exc:
                report.deferred_until = _now() + timedelta(seconds=exc.seconds)
                report.error = f"{exc}; run the backfill again later, it resumes where it stopped"
                break
            except WebSourceError as exc:
                report.error = f"{exc}; run the backfill again, it resumes where it stopped"
                break
            last = page
            if page.unreadable:
                event(log, logging.WARNING, "web preview posts unreadable; backfill passes them over",
                      channel=f"@{row.username}", posts=",".join(map(str, page.unreadable)))
            if total is None and page.newest_id:
                total = max(1, page.newest_id - floor)
            posts = [p for p in page.posts if not polled or p.message_id <= cursor or row.backfill_done]
            reached_since = False
            if since is not None:
                kept = [p for p in posts if p.date >= since]
                reached_since = len(kept) < len(posts)
                posts = kept
            if limit is not None and stored + len(posts) >= limit:
                posts = posts[len(posts) - (limit - stored):] if limit > stored else []
                reached_since = True
            low = min([p.message_id for p in posts] + ([] if reached_since else page.ids), default=None)
            if posts or low is not None:
                posts = await self._forward_ids(posts)
                res = await self.rt.ingestor.ingest(row, posts, rule=rule, seen=len(posts), backfill_low=low,
                                                    arrival=Arrival("backfill"))
                report.new += res.new
                report.edited += res.edited
                report.alerts += res.alerts
                stored += len(posts)
            if progress is not None:
                progress(stored, total)
            if reached_since:
                break
            if page.before is None or not page.ids:
                complete = True
                break
            if row.backfill_done and (page.oldest_id or 0) <= floor + 1:
                break
            if page.before in visited or (before is not None and page.before >= before):
                event(log, logging.WARNING, "web preview paging loops; stopping", channel=f"@{row.username}",
                      before=page.before)
                report.error = "the preview's paging went in a loop; stopped"
                break
            visited.add(page.before)
            before = page.before
        report.requests = self.client.requests - req0
        values: dict[str, object] = {}
        if last is not None:
            values = self._available(row, last)
        if complete:
            values["backfill_done"] = True
        if values:
            await self.rt.store.update_channel(row.id, **values)
        if progress is not None and complete:
            progress(stored, stored)
        await self.rt.store.record_run(row.id, "backfill", started, posts=stored, requests=report.requests,
                                       error=report.error)
        event(log, logging.INFO, "backfill", channel=channel.key, stored=stored, new=report.new,
              alerts=report.alerts, done=complete, error=report.error or "")
        return report


def _merge(pages: Sequence[WebPage]) -> list[Post]:
    """The posts of several pages, oldest first, each message once (pages can overlap while posts arrive)."""
    by_id: dict[int, Post] = {}
    for page in pages:
        for p in page.posts:
            by_id.setdefault(p.message_id, p)
    return [by_id[k] for k in sorted(by_id)]
