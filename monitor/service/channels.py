"""The channels this process knows: every enabled configured channel, its ``channels`` row id (leases live on
the rows), which of them are being polled right now, and this process's :class:`~monitor.leases.Leases`."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from monitor.config import ChannelConfig, Settings
from monitor.leases import Leases
from monitor.logs import event
from monitor.service.context import ServiceContext, log


class ChannelBook:
    """Enabled channels by key, their row ids, the ones polled now; read by every part that touches a channel."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.channels: dict[str, ChannelConfig] = {}  # key -> config (enabled ones)
        self.row_ids: dict[str, int] = {}  # key -> channels.id
        self.polling: set[int] = set()  # channel ids being polled now
        self.leases: Leases | None = None

    async def register(self, s: Settings) -> None:
        """A channels row for every enabled channel (leases live on the rows)."""
        assert self.ctx.rt is not None
        store = self.ctx.rt.store
        channels: dict[str, ChannelConfig] = {}
        rows: dict[str, int] = {}
        for c in s.channels:
            if not c.enabled:
                continue
            channels[c.key] = c
            for attempt in range(3):
                try:
                    row = await store.find_channel(username=c.username, tg_id=c.id)
                    if row is None:
                        row = await store.upsert_channel(username=c.username, tg_id=c.id, source=c.source)
                    rows[c.key] = row.id
                    break
                except IntegrityError:
                    # Another service registered it at the same moment: read it back.
                    if attempt == 2:
                        raise
                except ValueError as exc:
                    event(log, logging.ERROR, "channel not registered", channel=c.key, error=str(exc))
                    break
        self.channels, self.row_ids = channels, rows

    def key_of(self, row_id: int) -> str | None:
        """The configured key of a channels row, or None."""
        return next((k for k, v in self.row_ids.items() if v == row_id), None)

    def of_source(self, source: str) -> list[str]:
        """The keys of the enabled channels of one source kind."""
        return [k for k, c in self.channels.items() if c.source == source]

    @property
    def held(self) -> int:
        """How many channels this process holds the lease of."""
        return len(self.leases.held) if self.leases else 0
