"""``tgmonitor run``: the long-running service, in parts, and its one-cycle form ``run --once``.

The parts (each one job; :class:`~monitor.service.core.Service` only wires them and owns the lifecycle):

- ``core``      Service: session lock, signals (SIGTERM/SIGINT stop, SIGHUP reload), start sequence, clean stop
- ``context``   ServiceContext: settings, runtime, scheduler jobs (add/remove/wake), work in flight, notifier
- ``channels``  ChannelBook: enabled channels, their row ids, the ones polled now, this process's leases
- ``runners``   one runner per source kind: its jobs object and the batching of polls that fall due together
- ``polling``   Poller: one poll job per held channel, after-poll bookkeeping, the edit/deletion re-reads
- ``leasing``   LeaseKeeper: renew leases, (un)schedule polls as channels move between processes
- ``telegram``  TelegramLink: unreachable backoff (RetryBackoff), the session check, a session that dies
- ``delivery``  Delivery: the outbox drain and, at start, alerts claimed before a crash
- ``backfills`` BackfillWorker: runs the backfills ``tgmonitor backfill`` queued for this process
- ``health``    HealthKeeper: incidents and gauges, status line, heartbeat + systemd watchdog, housekeeping
- ``reload``    Reloader: SIGHUP applies a re-read configuration
- ``once``      ``run --once``: poll everything once, deliver once, exit

A new periodic task is a part with an ``add_job()`` called from ``Service._serve_runtime``; a new per-source
loop is a part started there as a task (``ctx.spawn``), which stops with ``ctx.stopping``; a served component
(a web server) starts there like ``ctx.metrics.serve`` and closes in ``Service.run``'s ``finally``.
"""

from __future__ import annotations

from pathlib import Path

from monitor.config import Settings
from monitor.service.once import CycleResult, enabled_by_source, poll_all, run_once

__all__ = ["CycleResult", "enabled_by_source", "main", "poll_all", "run_once"]


def main(settings: Settings, config_path: Path | None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit code."""
    import asyncio

    # Imported here: ``run --once`` and the other commands need neither APScheduler nor the service parts.
    from monitor.service.core import Service

    return asyncio.run(Service(settings, config_path).run())
