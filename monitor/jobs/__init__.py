"""Source jobs: poll and backfill channels of one source kind, storing through the shared Ingestor.

Each source kind (``telethon``, ``web``) implements :class:`SourceJobs` (in :mod:`monitor.jobs.base`, with
the other shared types); the service, ``run --once`` and ``backfill`` only speak this protocol and get the
jobs of a source from :func:`source_jobs`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.jobs.base import PollReport, Progress, SessionDead, SourceJobs, source_unreachable

if TYPE_CHECKING:
    from monitor.runtime import Runtime

__all__ = ["PollReport", "Progress", "SessionDead", "SourceJobs", "source_jobs", "source_unreachable"]


def source_jobs(rt: Runtime, source: str) -> SourceJobs:
    """The jobs for one source kind (imported lazily: a web-only user never loads Telethon)."""
    if source == "web":
        from monitor.jobs.web import WebJobs

        return WebJobs(rt)
    if source == "telethon" and rt.settings.telegram.accounts:
        from monitor.jobs.accounts import AccountPool  # [[telegram.accounts]]: one client per account

        return AccountPool(rt)
    if source == "telethon":
        from monitor.jobs.telethon import TelethonJobs

        return TelethonJobs(rt)
    raise ValueError(f"unknown source {source!r}")
