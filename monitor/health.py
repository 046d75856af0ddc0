"""Health: operator incidents (once each) and the status snapshot behind ``tgmonitor status``.

An incident is a problem an operator must hear about: a channel that became unavailable, a dead Telegram
session, a gap between the stored and the server's message counts, a destination failing for an hour. It
is a row in ``incidents`` while open; opening it queues one operator alert (to the ``[[alerts]]`` with
``operator = true``) in the same transaction, and it is closed when the problem goes away, so a problem
that lasts a week still alerts once, and alerts again only if it comes back after being fixed."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from monitor import models as m
from monitor.alerts.outbox import enqueue_operator_alert
from monitor.config import ChannelConfig, Settings
from monitor.db import database_now, is_sqlite, sessionmaker
from monitor.leases import owner_name
from monitor.lock import lock_path
from monitor.logs import event
from monitor.models import now
from monitor.posts import channel_subject

log = logging.getLogger(__name__)

CHANNEL_UNAVAILABLE = "channel_unavailable"
SESSION_DEAD = "session_dead"
COUNT_GAP = "count_gap"
POLL_GAP = "poll_gap"
DESTINATION_FAILING = "destination_failing"
TELEGRAM_UNREACHABLE = "telegram_unreachable"
DATABASE_WRITES = "database_writes_failing"
#: kinds opened by the service's parts (monitor/service/push.py, monitor/jobs/accounts.py), titled here
PUSH_SILENT = "push_silent"
ACCOUNT_DOWN = "account_down"
#: an ``account_down`` incident's subject is this prefix and the account's name (its title names the account)
ACCOUNT_SUBJECT = "Telegram account "

FAILING_FOR = timedelta(hours=1)
#: the running service writes its heartbeat at least this often (monitor/service/dbwatch.py checks its writes)
HEARTBEAT_SECONDS = 10.0

_TITLES = {
    CHANNEL_UNAVAILABLE: "tgmonitor: канал недоступен — {subject}",
    SESSION_DEAD: "tgmonitor: сессия Telegram недействительна",
    COUNT_GAP: "tgmonitor: пропуск сообщений — {subject}",
    POLL_GAP: "tgmonitor: пропуск сообщений — {subject}",
    DESTINATION_FAILING: "tgmonitor: получатель не отвечает час — {subject}",
    TELEGRAM_UNREACHABLE: "tgmonitor: Telegram недоступен",
    DATABASE_WRITES: "tgmonitor: база данных не принимает запись",
    PUSH_SILENT: "tgmonitor: push-обновления Telegram не приходят",
    ACCOUNT_DOWN: "tgmonitor: аккаунт Telegram выведен из работы — {account}",
}
_BODIES = {
    CHANNEL_UNAVAILABLE: "Channel {subject} is unavailable: {detail}. It is retried rarely; the others go on.",
    SESSION_DEAD: "The Telegram session stopped working ({detail}). The Telethon channels are stopped; "
                  "run `tgmonitor login` and restart the service.",
    COUNT_GAP: "Channel {subject}: {detail}.",
    POLL_GAP: "Channel {subject}: {detail}. The next polls try again; the incident closes when one reaches "
              "Telegram's newest message.",
    TELEGRAM_UNREACHABLE: "Telegram cannot be reached: {detail}. The Telethon channels wait; the web channels, "
                          "delivery and everything else go on.",
    DATABASE_WRITES: "The database refuses writes: {detail}. Nothing new is stored or delivered until it "
                     "accepts them again (free disk space, check permissions); polls retry and lose nothing.",
    DESTINATION_FAILING: "Alert destination {subject} has failed for more than an hour: {detail}. "
                         "Its alerts stay queued and are retried.",
    PUSH_SILENT: "Telegram's push updates stopped arriving ({detail}). Nothing is lost: the channels are "
                 "polled as before push until an update arrives again, which closes the incident.",
    ACCOUNT_DOWN: "{subject} is taken out ({detail}). The incident closes when it works again (a dead "
                  "session: `tgmonitor login --account {account}`, no restart needed).",
}


def age_label(seconds: int) -> str:
    """An age in the status units: ``45s``, ``12m``, ``5h``, ``3d`` (the CLI table and the dashboard)."""
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


async def _lock_subject(s: AsyncSession, kind: str, subject: str) -> None:
    # Several services on one PostgreSQL may notice the same problem at once: serialise per incident.
    if not is_sqlite(s.bind):  # type: ignore[arg-type]
        key = int.from_bytes(hashlib.sha1(f"{kind}:{subject}".encode()).digest()[:8], "big", signed=True)
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


async def open_incident(engine: AsyncEngine, settings: Settings, kind: str, subject: str, detail: str,
                        *, exclude_destinations: Iterable[str] = (), opened_at: datetime | None = None) -> bool:
    """Open an incident unless one is open for (kind, subject); the first opening queues one operator
    alert per operator destination. True when it was opened now. ``opened_at``: when the problem began, if
    it could only be recorded later (the database refused writes meanwhile)."""
    async with sessionmaker(engine).begin() as s:
        await _lock_subject(s, kind, subject)
        existing = (await s.execute(select(m.Incident).where(m.Incident.kind == kind, m.Incident.subject == subject,
                                                             m.Incident.closed_at.is_(None)))).scalars().first()
        if existing is not None:
            return False
        inc = m.Incident(kind=kind, subject=subject[:256], detail=detail, opened_at=opened_at or now(),
                         notified=False)
        s.add(inc)
        await s.flush()
        skip = set(exclude_destinations)
        # A failing destination is not told about itself (it would fail too); the other operators are.
        targets = dataclasses.replace(settings, alerts=tuple(a for a in settings.alerts if a.name not in skip))
        title, body = incident_text(kind, subject, detail)
        dests = await enqueue_operator_alert(s, targets, title=title, body=body, key=f"incident:{inc.id}")
        inc.notified = bool(dests)
    event(log, logging.ERROR, "incident", kind=kind, subject=subject, detail=detail,
          operator_alerts=dests)
    return True


async def close_incidents(engine: AsyncEngine, kind: str, *, keep_open: Iterable[str] = (),
                          subjects: Iterable[str] | None = None) -> int:
    """Close the open incidents of ``kind`` whose subject is not in ``keep_open`` (limited to
    ``subjects`` when given). Returns how many closed."""
    keep = set(keep_open)
    only = set(subjects) if subjects is not None else None
    closed = 0
    async with sessionmaker(engine).begin() as s:
        rows = (await s.execute(select(m.Incident).where(m.Incident.kind == kind,
                                                         m.Incident.closed_at.is_(None)))).scalars()
        for inc in rows:
            if inc.subject in keep or (only is not None and inc.subject not in only):
                continue
            inc.closed_at = now()
            closed += 1
            event(log, logging.INFO, "incident closed", kind=kind, subject=inc.subject)
    return closed


def _configured(settings: Settings) -> list[ChannelConfig]:
    return [c for c in settings.channels if c.enabled]


def _row_matches(row: m.Channel, c: ChannelConfig) -> bool:
    return (c.id is not None and row.tg_id == c.id) or (c.username is not None and row.username == c.username)


async def check_incidents(engine: AsyncEngine, settings: Settings) -> list[str]:
    """Open and close the channel, count-gap and destination incidents; returns the ones opened now."""
    opened: list[str] = []
    async with sessionmaker(engine)() as s:
        rows = list((await s.execute(select(m.Channel))).scalars())
    configured = _configured(settings)
    # An incident about a channel is named as the configuration names it (``@name`` or the id), the way the
    # source jobs that open incidents themselves name it: one problem, one incident, one operator alert.
    key_of: dict[int, str] = {}
    for r in rows:
        cfg = next((c for c in configured if _row_matches(r, c)), None)
        if cfg is not None:
            key_of[r.id] = cfg.key
    ours = [r for r in rows if r.id in key_of]
    subjects = set(key_of.values())

    bad: dict[str, str] = {}
    for r in ours:
        if r.status == "unavailable":
            bad[key_of[r.id]] = r.status_reason or "unavailable"
    for subj, why in bad.items():
        if await open_incident(engine, settings, CHANNEL_UNAVAILABLE, subj, why):
            opened.append(f"{CHANNEL_UNAVAILABLE}:{subj}")
    await close_incidents(engine, CHANNEL_UNAVAILABLE, keep_open=bad, subjects=subjects)

    gaps: dict[str, str] = {}
    short: set[str] = set()  # any shortfall at all: an incident the Telethon count check opened stays open
    for r in ours:
        # The server's count includes service messages and album members; seen_count counts every id seen,
        # so once the history is complete the two agree up to deletions (which lower the server's count).
        if r.backfill_done and r.server_count is not None:
            missing = r.server_count - (r.seen_count or 0)
            if missing > 0:
                short.add(key_of[r.id])
            if missing > max(3, r.server_count // 100):
                gaps[key_of[r.id]] = (
                    f"the server counts {r.server_count} messages, {r.seen_count or 0} were seen ({missing} missing)")
    for subj, why in gaps.items():
        if await open_incident(engine, settings, COUNT_GAP, subj, why):
            opened.append(f"{COUNT_GAP}:{subj}")
    # closed only once the counts agree: closing below the threshold would let the count check reopen it (and
    # alert again) at its next run
    await close_incidents(engine, COUNT_GAP, keep_open=short | set(gaps), subjects=subjects)

    failing = await failing_destinations(engine, [a.name for a in settings.alerts])
    for name, why in failing.items():
        if await open_incident(engine, settings, DESTINATION_FAILING, name, why, exclude_destinations=[name]):
            opened.append(f"{DESTINATION_FAILING}:{name}")
    await close_incidents(engine, DESTINATION_FAILING, keep_open=failing)
    return opened


async def failing_destinations(engine: AsyncEngine, names: Sequence[str],
                               at: datetime | None = None) -> dict[str, str]:
    """Destinations with an alert failing for over an hour and nothing delivered in that hour."""
    at = at or now()
    since = at - FAILING_FOR
    out: dict[str, str] = {}
    async with sessionmaker(engine)() as s:
        for name in names:
            oldest = (await s.execute(
                select(m.Alert.created_at, m.Alert.last_error)
                .where(m.Alert.destination == name, m.Alert.status.in_(("pending", "failed")),
                       m.Alert.attempts > 0, m.Alert.created_at < since)
                .order_by(m.Alert.created_at).limit(1))).first()
            if oldest is None:
                continue
            sent = (await s.execute(select(func.max(m.Alert.sent_at))
                                    .where(m.Alert.destination == name, m.Alert.status == "sent"))).scalar_one()
            if sent is not None and sent >= since:
                continue
            out[name] = (oldest.last_error or "delivery failed")[:300]
    return out


# --------------------------------------------------------------------------- status


@dataclass(slots=True)
class ChannelStatus:
    channel: str
    source: str
    status: str
    last_poll: datetime | None
    posts: int
    cursor: int
    lag_seconds: int | None  # since the last poll
    last_post: datetime | None
    last_error: str | None
    lease_owner: str | None
    configured: bool
    account: str | None = None  # the Telegram account reading it now (several accounts, issue 16)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel, "source": self.source, "status": self.status,
            "last_poll": self.last_poll.isoformat() if self.last_poll else None, "posts": self.posts,
            "cursor": self.cursor, "lag_seconds": self.lag_seconds,
            "last_post": self.last_post.isoformat() if self.last_post else None,
            "last_error": self.last_error, "lease_owner": self.lease_owner, "configured": self.configured,
            "account": self.account,
        }


async def status_snapshot(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """Everything ``tgmonitor status`` shows, as plain data."""
    async with sessionmaker(engine)() as s:
        t = await database_now(s)  # lease and heartbeat times are the database's (monitor.leases)
        rows = list((await s.execute(select(m.Channel).order_by(m.Channel.id))).scalars())
        counts = dict((await s.execute(select(m.Post.channel_id, func.count()).group_by(m.Post.channel_id))).all())
        outbox = dict((await s.execute(select(m.Alert.status, func.count()).group_by(m.Alert.status))).all())
        incidents = list((await s.execute(select(m.Incident).where(m.Incident.closed_at.is_(None))
                                          .order_by(m.Incident.opened_at))).scalars())
        queued = (await s.execute(select(func.count()).select_from(m.BackfillRequest)
                                  .where(m.BackfillRequest.status.in_(("queued", "running"))))).scalar_one()
        nodes = list((await s.execute(select(m.ServiceNode).where(
            m.ServiceNode.seen_at > t - timedelta(seconds=settings.schedule.lease_seconds)))).scalars())
    configured = _configured(settings)
    channels: list[ChannelStatus] = []
    seen_cfg: set[str] = set()
    for r in rows:
        cfg = next((c for c in settings.channels if _row_matches(r, c)), None)
        if cfg is not None:
            seen_cfg.add(cfg.key)
        channels.append(ChannelStatus(
            channel=channel_subject(r.username, r.tg_id), source=r.source, status=r.status,
            last_poll=r.last_poll_at, posts=int(counts.get(r.id, 0)), cursor=int(r.cursor or 0),
            lag_seconds=int((t - r.last_poll_at).total_seconds()) if r.last_poll_at else None,
            last_post=r.last_post_at, last_error=r.last_error,
            lease_owner=r.lease_owner if r.lease_until and r.lease_until > t else None,
            configured=cfg is not None and cfg.enabled, account=r.account))
    for c in configured:
        if c.key not in seen_cfg:
            channels.append(ChannelStatus(channel=c.key, source=c.source, status="never polled", last_poll=None,
                                          posts=0, cursor=0, lag_seconds=None, last_post=None, last_error=None,
                                          lease_owner=None, configured=True))
    return {
        "channels": [c.as_dict() for c in channels],
        "outbox": {k: int(outbox.get(k, 0)) for k in ("pending", "sent", "failed", "silent")}
        | {k: int(v) for k, v in outbox.items()},
        "incidents": [{"kind": i.kind, "subject": i.subject, "detail": i.detail,
                       "opened_at": i.opened_at.isoformat()} for i in incidents],
        "backfills_queued": int(queued),
        "services": [{"owner": n.owner, "pid": n.pid, "seen_at": n.seen_at.isoformat()} for n in nodes],
    }


async def database_gauges(engine: AsyncEngine) -> dict[str, Any]:
    """Counts for the Prometheus gauges (cheap aggregate queries)."""
    async with sessionmaker(engine)() as s:
        posts = (await s.execute(select(func.count()).select_from(m.Post))).scalar_one()
        matches = (await s.execute(select(func.count()).select_from(m.Match))).scalar_one()
        alerts = dict((await s.execute(select(m.Alert.status, func.count()).group_by(m.Alert.status))).all())
        floods = (await s.execute(select(func.count()).select_from(m.FloodWait))).scalar_one()
        chans = dict((await s.execute(select(m.Channel.status, func.count()).group_by(m.Channel.status))).all())
    return {"posts": int(posts), "matches": int(matches), "alerts": {k: int(v) for k, v in alerts.items()},
            "flood_waits": int(floods), "channels": {k: int(v) for k, v in chans.items()}}


# --------------------------------------------------------------------------- the running service's own state


def incident_text(kind: str, subject: str, detail: str) -> tuple[str, str]:
    """The operator alert's title and body for an incident (also sent directly, when the outbox cannot be
    written)."""
    fields = {"subject": subject, "detail": detail, "account": subject.removeprefix(ACCOUNT_SUBJECT)}
    title = _TITLES.get(kind, "tgmonitor: {subject}").format(**fields)
    body = _BODIES.get(kind, "{subject}: {detail}").format(**fields)
    return title, body


def state_path(settings: Settings) -> Path:
    """The running service's state file: beside its session lock (``tgmonitor status`` reads it)."""
    return lock_path(settings).with_name("tgmonitor.state")


def write_service_state(settings: Settings, state: str, *, reason: str | None = None,
                        since: datetime | None = None) -> bool:
    """Record this process's state (``ok`` or ``degraded`` with the reason) for ``tgmonitor status``; best
    effort (a full disk may refuse it too: status then still sees the stale database heartbeat)."""
    path = state_path(settings)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    doc = {"pid": os.getpid(), "state": state, "reason": reason, "since": since.isoformat() if since else None}
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if state != "ok":
            # A full disk refuses the content; an empty file (no data block needed) in place of the old "ok"
            # still says that something is wrong.
            with contextlib.suppress(OSError):
                path.unlink()
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return False


def clear_service_state(settings: Settings) -> None:
    """The service stopped: its state file goes."""
    with contextlib.suppress(OSError):
        state_path(settings).unlink()


async def service_health(engine: AsyncEngine, settings: Settings, pid: int | None) -> dict[str, Any]:
    """How the service holding the session lock (``pid``) is doing: ``ok`` or ``degraded`` with the reason.

    Its own state file says why when it could write it; otherwise a database heartbeat older than the lease
    time says that its writes are not getting through (the process is alive: it holds the lock)."""
    if not pid:
        return {"state": None, "reason": None, "since": None}
    try:
        raw = state_path(settings).read_text(encoding="utf-8")
    except OSError:
        raw = None
    if raw is not None and not raw.strip():
        return {"state": "degraded", "since": None,
                "reason": "it could not even write its state file (a full disk?): see its log"}
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("pid") == pid and doc.get("state") == "degraded":
        return {"state": "degraded", "reason": doc.get("reason"), "since": doc.get("since")}
    async with sessionmaker(engine)() as s:
        t = await database_now(s)
        seen = (await s.execute(select(m.ServiceNode.seen_at).where(
            m.ServiceNode.owner == owner_name(lock_path(settings)), m.ServiceNode.pid == pid))).scalar_one_or_none()
    # a running service writes its heartbeat every HEARTBEAT_SECONDS (its database check) at the least
    if seen is not None and t - seen > timedelta(seconds=3 * HEARTBEAT_SECONDS):
        age = int((t - seen).total_seconds())
        return {"state": "degraded", "since": seen.isoformat(),
                "reason": f"its database heartbeat is {age} s old: its writes are not getting through"}
    return {"state": "ok", "reason": None, "since": None}
