"""The ``backfill`` command's work: find the configured channel, run its source's backfill with a progress
bar, deliver the alerts it created once; or, while a service holds the session lock, queue the backfill for
that service and watch its progress. Kept out of the CLI so tests (and the service) call it directly."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from monitor import models as m
from monitor.config import ChannelConfig, Settings, parse_channel_ref
from monitor.jobs import source_jobs
from monitor.jobs.base import PollReport, SessionDead
from monitor.lock import LockHeld, SessionLock, lock_path


class BackfillError(Exception):
    """The backfill cannot start (unknown channel); ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def find_configured(settings: Settings, ref: str) -> ChannelConfig:
    """The configured channel named by ``ref`` (@name, name, t.me link or numeric id)."""
    try:
        username, cid = parse_channel_ref(ref)
    except ValueError as exc:
        raise BackfillError(f"{ref!r}: {exc}") from None
    for c in settings.channels:
        if (username and c.username == username) or (cid is not None and c.id == cid):
            return c
    known = ", ".join(c.key for c in settings.channels) or "none"
    example = f"@{username}" if username else str(cid)
    raise BackfillError(f"{ref} is not a configured channel (configured: {known}); add it to the config first, "
                        f"e.g. [[channels]] username = \"{example.lstrip('@')}\"")


async def backfill_channel(
    settings: Settings,
    ref: str,
    *,
    since: datetime | None = None,
    limit: int | None = None,
    alert: bool = False,
    progress: bool = True,
) -> tuple[int, str]:
    """Backfill one configured channel; returns (exit code, summary line)."""
    from tqdm import tqdm

    channel = find_configured(settings, ref)
    # no bar in logs and pipes (journald, cron): only on a terminal
    bar = tqdm(total=None, unit=" posts", desc=f"backfill {channel.key}",
               disable=not progress or not sys.stderr.isatty(), leave=False,
               dynamic_ncols=True)
    try:
        return await _run(settings, channel, since, limit, alert, bar)
    except (SQLAlchemyError, OSError) as exc:  # e.g. the database cannot be reached: one line, exit 1
        from monitor.runtime import database_problem

        line = database_problem(exc, settings.database.url)
        return 1, line or f"backfill failed: {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        bar.close()


async def _run(settings: Settings, channel: ChannelConfig, since: datetime | None, limit: int | None,
               alert: bool, bar: Any) -> tuple[int, str]:
    from monitor.alerts.deliver import deliver_due
    from monitor.runtime import open_runtime

    def on_progress(stored: int, total: int | None) -> None:
        if total is not None and total != bar.total:
            bar.total = max(total, stored)
        bar.update(stored - bar.n)

    delivered = 0
    async with open_runtime(settings) as rt:
        jobs = source_jobs(rt, channel.source)
        try:
            report: PollReport = await jobs.backfill(channel, since=since, limit=limit, alert=alert,
                                                     progress=on_progress)
        except SessionDead as exc:
            return 78, f"{channel.key}: {exc}"
        finally:
            await jobs.aclose()
        if alert and report.alerts:
            delivered = await deliver_due(rt)
    line = (f"{channel.key}: {report.new} new posts, {report.edited} changed, {report.requests} requests"
            + (f", {report.alerts} alerts ({delivered} delivered now)" if alert else ""))
    if report.error:
        return 1, f"{line}\n{channel.key}: {report.error}"
    return 0, line


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
        print(f"the service ({who}) is running here: backfill of {key} queued as request #{req}; "
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

