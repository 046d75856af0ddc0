"""Backfills queued for the running service (``backfill_requests``).

``tgmonitor backfill`` cannot use the Telegram session while ``tgmonitor run`` holds it, so it queues the
request here and watches its progress; the service claims queued requests (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so among several services exactly one takes each), runs them and records progress. A backfill
interrupted by a stop goes back to ``queued``: backfills resume page by page, so nothing is fetched twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor import models as m
from monitor.db import is_sqlite, sessionmaker
from monitor.models import now

FINISHED = ("done", "failed")


async def queue_backfill(engine: AsyncEngine, channel: str, *, since: datetime | None = None,
                         limit: int | None = None, alert: bool = False) -> int:
    """Queue a backfill of ``channel`` (as the user typed it) for the service; returns the request id."""
    async with sessionmaker(engine).begin() as s:
        row = m.BackfillRequest(channel=channel, since=since, limit=limit, alert=alert, status="queued",
                                stored=0, requested_at=now())
        s.add(row)
        await s.flush()
        return row.id


async def get_request(engine: AsyncEngine, request_id: int) -> m.BackfillRequest | None:
    async with sessionmaker(engine)() as s:
        return await s.get(m.BackfillRequest, request_id)


async def claim_next(engine: AsyncEngine) -> m.BackfillRequest | None:
    """Take the oldest queued request (marking it running), or None."""
    async with sessionmaker(engine).begin() as s:
        q = select(m.BackfillRequest).where(m.BackfillRequest.status == "queued").order_by(m.BackfillRequest.id)
        if not is_sqlite(engine):
            q = q.with_for_update(skip_locked=True)
        row = (await s.execute(q.limit(1))).scalar_one_or_none()
        if row is None:
            return None
        row.status = "running"
        row.error = None
        return row


async def set_progress(engine: AsyncEngine, request_id: int, stored: int, total: int | None) -> None:
    async with sessionmaker(engine).begin() as s:
        await s.execute(update(m.BackfillRequest).where(m.BackfillRequest.id == request_id)
                        .values(stored=stored, total=total))


async def finish(engine: AsyncEngine, request_id: int, status: str, *, stored: int | None = None,
                 error: str | None = None) -> None:
    """Mark a request ``done``, ``failed`` or back to ``queued`` (interrupted by a stop)."""
    values: dict[str, object] = {"status": status, "error": error}
    if stored is not None:
        values["stored"] = stored
    if status in FINISHED:
        values["finished_at"] = now()
    async with sessionmaker(engine).begin() as s:
        await s.execute(update(m.BackfillRequest).where(m.BackfillRequest.id == request_id).values(**values))


async def requeue_running(engine: AsyncEngine) -> int:
    """At start-up: requests left ``running`` by a process that died go back to the queue.

    Only safe when no other service shares the database; on PostgreSQL with several services the
    caller passes only its own (the service tracks them), so this is used for SQLite."""
    async with sessionmaker(engine).begin() as s:
        res = await s.execute(update(m.BackfillRequest).where(m.BackfillRequest.status == "running")
                              .values(status="queued"))
        return int(cast("CursorResult[Any]", res).rowcount or 0)


async def watch(engine: AsyncEngine, request_id: int, show: Callable[[m.BackfillRequest], None], *,
                every: float = 1.0) -> m.BackfillRequest:
    """Call ``show(row)`` whenever the request's progress changes, until it is done or failed."""
    last: tuple[object, ...] | None = None
    while True:
        row = await get_request(engine, request_id)
        if row is None:
            raise KeyError(request_id)
        state = (row.status, row.stored, row.total, row.error)
        if state != last:
            show(row)
            last = state
        if row.status in FINISHED:
            return row
        await asyncio.sleep(every)
