"""How posts reached us and how fast they became alerts (issue 12): the read side behind ``tgmonitor status``
and the service's latency and push gauges.

Every post records how it first arrived (``posts.arrival``: push, poll, backfill, import, web), when we first
had it (``posts.seen_at``) and whether a reconciling poll caught it because push updates missed it
(``posts.push_missed``); every alert records when it left (``alerts.sent_at``). Latency is the post's own date
(when Telegram published it) to the alert sent: what the reader of the alert waited."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.posts import channel_subject

#: The arrival kinds, in the order ``status`` shows them.
ARRIVALS = ("push", "poll", "backfill", "import", "web")


@dataclass(frozen=True, slots=True)
class Latency:
    """Post date → alert sent for one channel over the window, in seconds."""

    alerts: int
    p50: float
    p95: float
    p99: float
    seen_p50: float | None  # post first had → alert sent: the part of the delay that is ours
    seen_p95: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 < q < 1) of ``values``, interpolated between the nearest ranks (what
    ``statistics.quantiles(method="inclusive")`` gives, for any q)."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


HISTORY_ARRIVALS = ("import", "backfill")


async def alert_latency(engine: AsyncEngine, *, hours: int = 24, now: datetime | None = None) -> dict[str, Latency]:
    """Per channel, post date → alert sent of the match alerts sent in the last ``hours``, for posts that
    arrived live (push, poll, web; posts stored before arrivals were recorded count too)."""
    since = (now or datetime.now(UTC)) - timedelta(hours=hours)
    q = (select(m.Channel.username, m.Channel.tg_id, m.Post.date, m.Post.seen_at, m.Alert.sent_at)
         .select_from(m.Alert).join(m.Post, m.Post.id == m.Alert.post_id)
         .join(m.Channel, m.Channel.id == m.Post.channel_id)
         .where(m.Alert.status == "sent", m.Alert.kind == "match", m.Alert.sent_at >= since,
                # monitoring latency: an imported or backfilled old post that alerts now is history, not a delay
                or_(m.Post.arrival.is_(None), m.Post.arrival.not_in(HISTORY_ARRIVALS))))
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    delays: dict[str, list[float]] = {}
    ours: dict[str, list[float]] = {}
    for username, tg_id, date, seen_at, sent_at in rows:
        if sent_at is None:  # (the query asks for sent ones only)
            continue
        key = channel_subject(username, tg_id)
        sent = _aware(sent_at)
        delays.setdefault(key, []).append(max(0.0, (sent - _aware(date)).total_seconds()))
        if seen_at is not None:
            ours.setdefault(key, []).append(max(0.0, (sent - _aware(seen_at)).total_seconds()))
    return {k: Latency(len(v), percentile(v, 0.5), percentile(v, 0.95), percentile(v, 0.99),
                       statistics.median(ours[k]) if ours.get(k) else None,
                       percentile(ours[k], 0.95) if ours.get(k) else None)
            for k, v in sorted(delays.items())}


async def arrival_counts(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per channel, how many stored posts first arrived each way (posts stored before arrivals were
    recorded are not counted), plus ``push_missed``: the posts polling caught because push missed them."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(m.Channel.username, m.Channel.tg_id, m.Post.arrival, func.count()).select_from(m.Post)
            .join(m.Channel, m.Channel.id == m.Post.channel_id)
            .where(m.Post.arrival.is_not(None)).group_by(m.Channel.username, m.Channel.tg_id, m.Post.arrival)
        )).all()
        missed = (await conn.execute(
            select(m.Channel.username, m.Channel.tg_id, func.count()).select_from(m.Post)
            .join(m.Channel, m.Channel.id == m.Post.channel_id)
            .where(m.Post.push_missed.is_(True)).group_by(m.Channel.username, m.Channel.tg_id))).all()
    out: dict[str, dict[str, int]] = {}
    for username, tg_id, arrival, n in rows:
        out.setdefault(channel_subject(username, tg_id), {})[str(arrival)] = int(n)
    for username, tg_id, n in missed:
        out.setdefault(channel_subject(username, tg_id), {})["push_missed"] = int(n)
    return out
