"""Draining the outbox through Apprise: one attempt per due alert, digests instead of floods.

``deliver_due(rt)`` makes one pass: for each destination outside its quiet hours it claims the due rows,
renders them, sends them and marks them. It never waits out a backoff (``run --once`` and the service's
drain job call it repeatedly). A backlog larger than the destination's remaining per-minute allowance,
or alerts held through quiet hours, go out as digest messages instead of one ping each.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import apprise
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.alerts import outbox, ratelimit
from monitor.alerts.render import (
    AlertView,
    Message,
    render_alert,
    render_digests,
    render_followups,
    render_test,
    with_followups,
)
from monitor.config import AlertDestination, Settings, redact_url
from monitor.db import sessionmaker
from monitor.logs import event, redact
from monitor.models import now as utcnow
from monitor.posts import channel_label, message_link

log = logging.getLogger(__name__)

CONSOLE = "console://"
FOLLOWUP_HOLD = timedelta(minutes=15)  # follow-ups wait this long for a message to ride on
SEND_TIMEOUT = 60.0
_FORMATS = {"text": apprise.NotifyFormat.TEXT, "markdown": apprise.NotifyFormat.MARKDOWN,
            "html": apprise.NotifyFormat.HTML}


def worker_name() -> str:
    """A name unique to this process, recorded on the rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""


def _scrub(text: str, url: str) -> str:
    """Remove any token-like part of ``url`` from an error message (Apprise may echo paths)."""
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":")[0]
    for part in re.split(r"[/:@?&=]+", rest):
        if len(part) >= 6 and part != host:
            text = text.replace(part, "***")
    return redact(text)


async def send(dest: AlertDestination, msg: Message) -> SendResult:
    """Deliver one message to one destination; never raises."""
    if dest.url.strip() == CONSOLE:
        sys.stdout.write(f"{msg.title}\n{msg.body}\n\n")
        sys.stdout.flush()
        return SendResult(True)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # Apprise's own log lines repeat what we report ourselves (with the URL redacted)
        logging.getLogger("apprise").propagate = False
    ap = apprise.Apprise()
    if not ap.add(dest.url):
        return SendResult(False, f"not a usable Apprise URL ({redact_url(dest.url)})")
    logs: list[str] = []

    def collect(entry: Any, _plugin: Any) -> None:
        if entry.level in ("WARNING", "ERROR", "CRITICAL"):
            logs.append(str(entry.message))

    try:
        result = await ap.async_notify(body=msg.body, title=msg.title, body_format=_FORMATS[dest.format],
                                       timeout=SEND_TIMEOUT, log_callback=collect,
                                       log_level=logging.WARNING)
    except Exception as exc:  # a plugin bug must not take the delivery loop down
        return SendResult(False, _scrub(f"{type(exc).__name__}: {exc}", dest.url))
    if result:
        return SendResult(True)
    reason = "; ".join(dict.fromkeys(logs)) or "the destination refused the message"
    return SendResult(False, _scrub(reason, dest.url))


async def send_test(settings: Settings) -> list[tuple[AlertDestination, SendResult]]:
    """A test message to every destination (``alerts test``)."""
    return [(d, await send(d, render_test(d))) for d in settings.alerts]


# --------------------------------------------------------------------------- quiet hours


def _quiet_window(dest: AlertDestination, tz: ZoneInfo, at: datetime) -> tuple[bool, datetime | None, datetime | None]:
    """(inside quiet hours now, start and end of the quiet period that ended most recently)."""
    if dest.quiet_hours is None:
        return False, None, None
    start_min, end_min = dest.quiet_hours
    if start_min == end_min:
        return False, None, None
    local = at.astimezone(tz)
    minute = local.hour * 60 + local.minute
    inside = (start_min <= minute < end_min) if start_min < end_min else (minute >= start_min or minute < end_min)
    # the most recent end at or before now, and the start that preceded it
    end_day = local.date() if minute >= end_min else local.date() - timedelta(days=1)
    end = datetime.combine(end_day, time(end_min // 60, end_min % 60), tz)
    length = (end_min - start_min) % (24 * 60)
    return inside, end - timedelta(minutes=length), end


def in_quiet_hours(dest: AlertDestination, tz: ZoneInfo, at: datetime) -> bool:
    """Whether ``dest`` holds its alerts at ``at``."""
    return _quiet_window(dest, tz, at)[0]


# --------------------------------------------------------------------------- loading


async def load_views(engine: AsyncEngine, settings: Settings, rows: Sequence[m.Alert]) -> dict[int, AlertView]:
    """What rendering needs for each row: post text, date, channel, link, the matched spans."""
    names = {s.id: s.name for s in settings.entities}
    post_ids = {r.post_id for r in rows if r.post_id is not None}
    posts: dict[int, tuple[m.Post, m.Channel]] = {}
    spans: dict[int, list[tuple[str, int, int]]] = {}
    async with sessionmaker(engine)() as s:
        stored = {e.id: e.name for e in (await s.execute(select(m.Entity))).scalars()}
        ids = sorted(post_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            res = await s.execute(select(m.Post, m.Channel).join(m.Channel, m.Post.channel_id == m.Channel.id)
                                  .where(m.Post.id.in_(chunk)))
            for p, ch in res.all():
                posts[p.id] = (p, ch)
            mres = await s.execute(select(m.Match.post_id, m.Match.entity_id, m.Match.start, m.Match.end,
                                          m.Match.version, m.Match.in_preview).where(m.Match.post_id.in_(chunk)))
            for pid, eid, start, end, version, in_preview in mres.all():
                if not in_preview and version == posts[pid][0].version:
                    spans.setdefault(pid, []).append((eid, start, end))
    views: dict[int, AlertView] = {}
    for r in rows:
        v = AlertView(code=r.code, kind=r.kind, also_in=list(r.also_in or []), title=r.title, body=r.body,
                      entities=[names.get(e) or stored.get(e) or e for e in r.entity_ids])
        if r.post_id is not None and r.post_id in posts:
            p, ch = posts[r.post_id]
            v.channel = channel_label(ch.username, ch.title, ch.tg_id)
            v.date = p.date
            v.text = p.text or ""
            v.link = message_link(ch.username, ch.tg_id, p.message_id) if (ch.username or ch.tg_id) else None
            wanted = set(r.entity_ids)
            v.spans = [(a, b) for eid, a, b in spans.get(r.post_id, []) if eid in wanted and 0 <= a < b <= len(v.text)]
        views[r.id] = v
    return views


# --------------------------------------------------------------------------- draining


async def deliver_destination(
    engine: AsyncEngine,
    settings: Settings,
    dest: AlertDestination,
    *,
    worker: str,
    at: datetime | None = None,
) -> int:
    """One pass over one destination; returns the number of outbox rows delivered."""
    t = at or utcnow()
    tz = settings.delivery.tz
    inside, quiet_start, quiet_end = _quiet_window(dest, tz, t)
    if inside:
        return 0  # held: they go out as one digest when the quiet hours end
    limit = settings.delivery.rate_limit_per_minute
    # an estimate to plan the pass with (single messages or digests); each message takes its slot below
    budget = await ratelimit.free_slots(engine, dest.name, limit, at=at)
    if budget <= 0:
        return 0
    rows = await outbox.claim_due(engine, dest.name, worker, at=at)
    if not rows:
        return 0
    primary = [r for r in rows if r.kind != outbox.FOLLOWUP]
    followups = [r for r in rows if r.kind == outbox.FOLLOWUP]
    if not primary and min(r.created_at for r in followups) > t - FOLLOWUP_HOLD:
        await outbox.release(engine, [r.id for r in followups], worker)  # wait for a message to ride on
        return 0
    views = await load_views(engine, settings, rows)
    fviews = [views[r.id] for r in followups]
    fids = [r.id for r in followups]
    held = quiet_start is not None and quiet_end is not None and any(
        quiet_start <= r.created_at < quiet_end for r in primary)
    plan: list[tuple[Message, list[int]]] = []
    if not primary:
        plan.append((render_followups(fviews, dest), fids))
    elif len(primary) <= budget and not (held and len(primary) > 1):
        for i, r in enumerate(primary):
            msg = render_alert(views[r.id], dest, tz)
            ids = [r.id]
            if i == len(primary) - 1 and followups:
                msg, ids = with_followups(msg, fviews, dest.format), [r.id, *fids]
            plan.append((msg, ids))
    else:
        reason = "накопившихся за тихие часы" if held else "слишком много для отдельных сообщений"
        for msg, idx in render_digests([views[r.id] for r in primary], fviews, dest, tz, reason=reason):
            ids = [primary[i].id for i in idx]
            plan.append((msg, ids))
        if plan and followups:
            plan[-1] = (plan[-1][0], [*plan[-1][1], *fids])
    sendable, rest = plan[:budget], plan[budget:]
    if rest:
        await outbox.release(engine, [i for _, ids in rest for i in ids], worker)
    delivered = 0
    down: SendResult | None = None  # two failures in a row: the destination is down, spare the rest
    last_failed = False
    for n, (msg, ids) in enumerate(sendable):
        if down is None:
            # The claim is renewed right before each message: a pass to a slow destination can outlast it, and
            # a row whose claim lapsed may have been taken over by another worker, which then sends it.
            still = await outbox.renew_claim(engine, ids, worker)
            if still != set(ids):
                event(log, logging.WARNING, "alert claim lost before sending; left to the worker holding it",
                      destination=dest.name, alerts=len(set(ids) - still))
                await outbox.release(engine, [i for i in ids if i in still], worker)
                continue
            # the destination's per-minute limit, shared by every process draining this database
            if not await ratelimit.take_slot(engine, dest.name, limit, at=at):
                await outbox.release(engine, [i for _, rest_ids in sendable[n:] for i in rest_ids], worker)
                break
        res = down or await send(dest, msg)
        if not res.ok and last_failed and down is None:
            down = res
        last_failed = not res.ok
        if res.ok:
            # each message gets its own sent_at (rows sent together share one: one message)
            marked = await outbox.mark_sent(engine, ids, worker, max(utcnow(), t) + timedelta(microseconds=n))
            if marked < len(ids):
                # the claim lapsed while sending and another worker holds the rest now: they are not marked
                # here (they are its rows), and it may send them once more (at-least-once, same #code)
                event(log, logging.WARNING, "alert claim lost while sending", destination=dest.name,
                      alerts=len(ids) - marked)
            delivered += marked
        else:
            retry, failed = await outbox.mark_failed_attempt(engine, ids, worker, res.error,
                                                             max_attempts=settings.delivery.max_attempts, at=t)
            event(log, logging.WARNING, "alert delivery failed", destination=dest.name,
                  url=redact_url(dest.url), alerts=len(ids), retry=retry, failed=failed, error=res.error)
    if delivered:
        event(log, logging.INFO, "alerts delivered", destination=dest.name, alerts=delivered,
              messages=sum(1 for _ in sendable))
    return delivered


async def deliver_due(rt: Any, *, at: datetime | None = None, worker: str | None = None) -> int:
    """One delivery attempt for every alert due now, for every destination; returns rows delivered.

    ``rt`` is a Runtime (``rt.engine``, ``rt.settings``). Destinations are drained one after the other
    so that a failing one only costs its own timeout."""
    worker = worker or worker_name()
    total = 0
    for dest in rt.settings.alerts:
        try:
            total += await deliver_destination(rt.engine, rt.settings, dest, worker=worker, at=at)
        except Exception as exc:  # a database hiccup for one destination must not stop the others
            event(log, logging.ERROR, "alert delivery pass failed", destination=dest.name,
                  error=_scrub(f"{type(exc).__name__}: {exc}", dest.url))
    return total
