"""The long-running process and its one-cycle form (``run --once``)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from monitor import models as m
from monitor.config import ChannelConfig, Settings
from monitor.jobs import PollReport, SessionDead, source_jobs
from monitor.lock import LockHeld, SessionLock, lock_path
from monitor.logs import event
from monitor.runtime import Runtime, open_runtime

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_NO_SESSION = 78


def enabled_by_source(settings: Settings) -> dict[str, list[ChannelConfig]]:
    groups: dict[str, list[ChannelConfig]] = defaultdict(list)
    for c in settings.channels:
        if c.enabled:
            groups[c.source].append(c)
    return dict(groups)


class CycleResult(list[PollReport]):
    """The reports of one cycle, plus the sources that could not be reached at all."""

    def __init__(self) -> None:
        super().__init__()
        self.unreachable: dict[str, str] = {}  # source -> the one-line message


def source_unreachable(exc: BaseException) -> str | None:
    """The one-line message when ``exc`` says a source's network cannot be reached (Telegram down or
    throttled), else None. Telethon's module is only looked at when it was loaded: a web-only process never
    imports it, and then no exception can be one of its."""
    import sys

    mod = sys.modules.get("monitor.sources.telethon")
    if mod is not None and isinstance(exc, mod.TelegramUnreachable):
        return str(exc)
    return None


async def poll_all(rt: Runtime) -> CycleResult:
    """Poll every enabled channel once, whatever its schedule; one source's failure spares the others.

    A source that cannot be reached (Telegram down or throttled) is reported in one line and its channels
    get that error; the other sources are polled all the same. A dead session (SessionDead) still ends the
    cycle: it needs the operator, not a retry."""
    reports = CycleResult()
    for source, channels in enabled_by_source(rt.settings).items():
        jobs = source_jobs(rt, source)
        try:
            reports.extend(await jobs.poll(channels))
        except Exception as exc:
            message = source_unreachable(exc)
            if message is None:
                raise
            reports.unreachable[source] = message
            event(log, logging.ERROR, message)
            reports.extend(PollReport(channel=c.key, error=message) for c in channels)
        finally:
            await jobs.aclose()
    for r in reports:
        if r.error and any(r.error == msg for msg in reports.unreachable.values()):
            continue  # said once above, not once per channel
        event(log, logging.WARNING if r.error else logging.INFO, "poll", channel=r.channel, new=r.new,
              alerts=r.alerts, error=r.error or "")
    return reports


async def deliver_due(rt: Runtime) -> int:
    """One delivery attempt for every alert that is due now (never waits out a backoff)."""
    if not rt.settings.alerts:
        return 0
    from monitor.alerts.deliver import deliver_due as drain

    return await drain(rt)


async def run_once(settings: Settings) -> int:
    """One cycle: poll every enabled channel, then one delivery attempt per due alert. Exit code.

    Takes the session lock like the service: a cycle beside a running service would share its session."""
    lock = SessionLock(lock_path(settings))
    try:
        lock.acquire()
    except LockHeld as exc:
        event(log, logging.ERROR, str(exc))
        return 1
    try:
        return await _run_once(settings)
    finally:
        lock.release()


async def _run_once(settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        try:
            cycle = await poll_all(rt)
        except SessionDead as exc:
            event(log, logging.ERROR, str(exc))
            await deliver_due(rt)
            return EXIT_NO_SESSION
        await deliver_due(rt)
    # A source that could not be reached at all makes the cycle a failed one (exit 1, so cron and timers see
    # it) — but only after every other source was polled and the due alerts went out.
    return EXIT_FAILURE if cycle.unreachable else 0


def main(settings: Settings, config_path: Path | None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit code."""
    import asyncio

    from monitor.scheduler import Service

    return asyncio.run(Service(settings, config_path).run())


async def backfill_or_queue(
    settings: Settings,
    ref: str,
    *,
    since: datetime | None = None,
    limit: int | None = None,
    alert: bool = False,
    progress: bool = True,
) -> tuple[int, str]:
    """``tgmonitor backfill``: run the backfill here, or, while a service holds the session lock, queue it
    for the service and show its progress until it is done. Ctrl-C stops watching, not the backfill.
    Returns (exit code, summary line)."""
    from monitor.jobs.backfill import backfill_channel, find_configured

    channel = find_configured(settings, ref)  # BackfillError (exit 2) for a channel that is not configured
    lock = SessionLock(lock_path(settings))
    try:
        lock.acquire()
    except LockHeld as exc:
        return await _queue_and_watch(settings, channel.key, exc.pid, since=since, limit=limit, alert=alert,
                                      progress=progress)
    try:
        return await backfill_channel(settings, ref, since=since, limit=limit, alert=alert, progress=progress)
    finally:
        lock.release()


async def _queue_and_watch(settings: Settings, key: str, pid: int | None, *, since: datetime | None,
                           limit: int | None, alert: bool, progress: bool) -> tuple[int, str]:
    import asyncio
    import sys

    from tqdm import tqdm

    from monitor import backfill_queue
    from monitor.db import create_engine

    engine = create_engine(settings.database.url)
    try:
        req = await backfill_queue.queue_backfill(engine, key, since=since, limit=limit, alert=alert)
        who = f"process {pid}" if pid else "another process"
        print(f"the service ({who}) holds the Telegram session: backfill of {key} queued as request #{req}; "
              f"it runs there (Ctrl-C stops watching, not the backfill)", file=sys.stderr)
        bar = tqdm(total=None, unit=" posts", desc=f"backfill {key} (service)", disable=not progress,
                   leave=False, dynamic_ncols=True)

        def show(row: m.BackfillRequest) -> None:
            if row.total is not None and row.total != bar.total:
                bar.total = max(row.total, row.stored)
            bar.update(max(0, row.stored - bar.n))
            bar.set_postfix_str(row.status)

        try:
            row = await backfill_queue.watch(engine, req, show)
        except asyncio.CancelledError:
            return 0, f"stopped watching; the service goes on with the backfill of {key} (request #{req})"
        finally:
            bar.close()
        if row.status == "failed":
            return 1, f"{key}: backfill failed in the service: {row.error}"
        return 0, f"{key}: {row.stored} posts stored by the service (request #{req})"
    finally:
        await engine.dispose()

