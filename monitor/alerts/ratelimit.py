"""``[delivery] rate_limit_per_minute``, shared by every process draining one database.

Each destination has one ``destination_rates`` row holding the database-clock times of its messages of the
last minute. A message takes a slot before it is sent: the row is read, and written back with the new time
only if its ``version`` is still the one read (a conditional UPDATE: compare-and-swap). Of two processes
taking the last slot at once, one UPDATE matches and the other matches nothing and looks again, so the
destination never gets more than the limit in any minute, however many services drain it — on SQLite and
PostgreSQL alike, with no lock held across a send. Counting the messages sent in the last minute before a
pass (what was done before) let two services each see the whole allowance free and together send twice it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from monitor import models as m
from monitor.db import database_now, sessionmaker

WINDOW = timedelta(minutes=1)
#: attempts at the compare-and-swap before giving up for this pass (each lost one means another took a slot)
MAX_TRIES = 50


def _recent(sends: list[str] | None, t: datetime) -> list[str]:
    """The send times (ISO, oldest first) still inside the window ending at ``t``."""
    since = t - WINDOW
    return [x for x in sends or [] if datetime.fromisoformat(x) > since]


async def _read(s: AsyncSession, destination: str) -> tuple[list[str], int] | None:
    row = (await s.execute(select(m.DestinationRate.sends, m.DestinationRate.version)
                           .where(m.DestinationRate.destination == destination))).first()
    return None if row is None else (list(row.sends or []), int(row.version))


async def free_slots(engine: AsyncEngine, destination: str, limit: int, *, at: datetime | None = None) -> int:
    """How many messages ``destination`` may still get in the current minute (an estimate for planning a
    pass: :func:`take_slot` is what decides). ``at`` stands for the database's clock (tests move it)."""
    async with sessionmaker(engine)() as s:
        t = at or await database_now(s)
        state = await _read(s, destination)
    used = len(_recent(state[0], t)) if state else 0
    return max(0, limit - used)


async def take_slot(engine: AsyncEngine, destination: str, limit: int, *, at: datetime | None = None) -> bool:
    """Take one message's slot in ``destination``'s last minute; False when the limit is reached (send
    nothing now: the alert stays due). Atomic across processes (see the module docstring). ``at`` stands for
    the database's clock (tests move it)."""
    if limit < 1:
        return False
    for _ in range(MAX_TRIES):
        async with sessionmaker(engine).begin() as s:
            t = at or await database_now(s)
            state = await _read(s, destination)
            if state is None:
                # the destination's first message: create its row (a concurrent creator wins, we look again)
                ins = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
                res = await s.execute(ins(m.DestinationRate).values(
                    destination=destination, sends=[t.isoformat()], version=1)
                    .on_conflict_do_nothing(index_elements=["destination"]))
                if cast("CursorResult[Any]", res).rowcount:
                    return True
                continue
            sends, version = state
            recent = _recent(sends, t)
            if len(recent) >= limit:
                return False
            res = await s.execute(update(m.DestinationRate)
                                  .where(m.DestinationRate.destination == destination,
                                         m.DestinationRate.version == version)
                                  .values(sends=[*recent, t.isoformat()], version=version + 1))
            if cast("CursorResult[Any]", res).rowcount == 1:
                return True
        # another process took a slot between our read and our write: read again
    return False
