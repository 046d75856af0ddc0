"""What every source's jobs share: the :class:`PollReport` of one poll, the ``Progress`` callback, the
:class:`SessionDead` error, the :class:`SourceJobs` protocol and :func:`source_unreachable`.

Kept apart from ``monitor/jobs/__init__.py`` so that the per-source job modules import these types without
importing the package that chooses between them (no import cycle)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.config import ChannelConfig


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


def source_unreachable(exc: BaseException) -> str | None:
    """The one-line message when ``exc`` says a source's network cannot be reached (Telegram down or
    throttled), else None. Telethon's module is only looked at when it was loaded: a web-only process never
    imports it, and then no exception can be one of its."""
    mod = sys.modules.get("monitor.sources.telethon")
    if mod is not None and isinstance(exc, mod.TelegramUnreachable):
        return str(exc)
    return None
