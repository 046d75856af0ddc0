"""The long-running process and its one-cycle form (``run --once``)."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from monitor.config import ChannelConfig, Settings
from monitor.jobs import PollReport, SessionDead, source_jobs
from monitor.logs import event
from monitor.runtime import Runtime, open_runtime

log = logging.getLogger(__name__)

EXIT_NO_SESSION = 78


def enabled_by_source(settings: Settings) -> dict[str, list[ChannelConfig]]:
    groups: dict[str, list[ChannelConfig]] = defaultdict(list)
    for c in settings.channels:
        if c.enabled:
            groups[c.source].append(c)
    return dict(groups)


async def poll_all(rt: Runtime) -> list[PollReport]:
    """Poll every enabled channel once, whatever its schedule; one source's failure spares the others."""
    reports: list[PollReport] = []
    for source, channels in enabled_by_source(rt.settings).items():
        jobs = source_jobs(rt, source)
        try:
            reports.extend(await jobs.poll(channels))
        finally:
            await jobs.aclose()
    for r in reports:
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
    """One cycle: poll every enabled channel, then one delivery attempt per due alert. Exit code."""
    async with open_runtime(settings) as rt:
        try:
            await poll_all(rt)
        except SessionDead as exc:
            event(log, logging.ERROR, str(exc))
            await deliver_due(rt)
            return EXIT_NO_SESSION
        await deliver_due(rt)
    return 0


def main(settings: Settings, config_path: Path | None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit code."""
    import asyncio

    from monitor.scheduler import Service

    return asyncio.run(Service(settings, config_path).run())
