"""The ``backfill`` command's work: find the configured channel, run its source's backfill with a progress
bar, deliver the alerts it created once. Kept out of the CLI so tests (and the service) call it directly."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from monitor.config import ChannelConfig, Settings, parse_channel_ref
from monitor.jobs import PollReport, SessionDead, source_jobs


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
        return 1, f"backfill failed: {type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        bar.close()


async def _run(settings: Settings, channel: ChannelConfig, since: datetime | None, limit: int | None,
               alert: bool, bar: Any) -> tuple[int, str]:
    from monitor.runtime import open_runtime
    from monitor.service import deliver_due

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
