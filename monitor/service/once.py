"""``tgmonitor run --once``: one cycle (poll every enabled channel once, whatever its schedule, then one
delivery attempt per due alert) under the same session lock as the service, and its exit code."""

from __future__ import annotations

import logging
import sys
from collections import defaultdict

from monitor.config import ChannelConfig, Settings
from monitor.jobs import source_jobs
from monitor.jobs.base import PollReport, SessionDead, source_unreachable
from monitor.lock import LockHeld, SessionLock, lock_path
from monitor.logs import event
from monitor.runtime import Runtime, missing_database, open_runtime, remember

# run --once logged as "monitor.service" before the split; kept so its log lines read as they did.
log = logging.getLogger("monitor.service")

EXIT_FAILURE = 1
EXIT_NO_SESSION = 78


def enabled_by_source(settings: Settings) -> dict[str, list[ChannelConfig]]:
    """The enabled channels, grouped by source kind (in configuration order)."""
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
            message = source_unreachable(exc) or _web_unreachable(exc)
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


def _web_unreachable(exc: BaseException) -> str | None:
    """The one-line message when ``exc`` says the web preview site cannot be reached, else None (the web
    source's module is looked at only when it was loaded). Here, not in ``source_unreachable``: the service
    answers that one with the Telegram backoff, which a web outage must not trigger."""
    mod = sys.modules.get("monitor.sources.web")
    if mod is not None and isinstance(exc, mod.WebUnreachable):
        return str(exc)
    return None


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
    missing = missing_database(settings)
    if missing is not None:
        # a cycle must not begin again with an empty archive because the file was deleted or moved away
        event(log, logging.ERROR, missing)
        return EXIT_FAILURE
    async with open_runtime(settings) as rt:
        remember(settings)
        try:
            cycle = await poll_all(rt)
        except SessionDead as exc:
            event(log, logging.ERROR, str(exc))
            await _deliver_due(rt)
            return EXIT_NO_SESSION
        await _deliver_due(rt)
    # A source that could not be reached at all makes the cycle a failed one (exit 1, so cron and timers see
    # it) — but only after every other source was polled and the due alerts went out.
    return EXIT_FAILURE if cycle.unreachable else 0


async def _deliver_due(rt: Runtime) -> int:
    """One delivery attempt for every alert that is due now; Apprise is not even imported without destinations."""
    if not rt.settings.alerts:
        return 0
    from monitor.alerts.deliver import deliver_due

    return await deliver_due(rt)
