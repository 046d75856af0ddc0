"""Source jobs: poll and backfill channels of one source kind, storing through the shared Ingestor.

Each source kind (``telethon``, ``web``) implements :class:`SourceJobs`; the scheduler, ``run --once``
and ``backfill`` only speak this protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from monitor.config import ChannelConfig

if TYPE_CHECKING:
    from monitor.runtime import Runtime


@dataclass(slots=True)
class PollReport:
    """What one poll or backfill of one channel did."""

    channel: str
    new: int = 0
    edited: int = 0
    alerts: int = 0
    requests: int = 0
    error: str | None = None
    deferred_until: datetime | None = None  # a flood wait or rate limit moved the work here
    unavailable: bool = False


#: progress(stored_so_far, total_or_None) — called after each stored page
Progress = Callable[[int, int | None], None]


class SessionDead(Exception):
    """The Telegram session is revoked or not authorised: the Telethon jobs must stop (exit 78)."""


class SourceJobs(Protocol):
    source: str

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport]:
        """Fetch every message newer than each channel's cursor (first poll sets the baseline)."""
        ...

    async def backfill(
        self,
        channel: ChannelConfig,
        *,
        since: datetime | None = None,
        limit: int | None = None,
        alert: bool = False,
        progress: Progress | None = None,
    ) -> PollReport:
        """Walk the channel's history back, resumable page by page."""
        ...

    async def aclose(self) -> None: ...


def source_jobs(rt: Runtime, source: str) -> SourceJobs:
    """The jobs for one source kind (imported lazily: a web-only user never loads Telethon)."""
    if source == "web":
        from monitor.jobs.web import WebJobs

        return WebJobs(rt)
    if source == "telethon":
        from monitor.jobs.telethon import TelethonJobs

        return TelethonJobs(rt)
    raise ValueError(f"unknown source {source!r}")
