"""The database as the running service needs it: writable, and (SQLite) still the file it opened.

Every ``CHECK_SECONDS`` (and at once when a part meets a database error) a real write — this process's
heartbeat row — proves that writes get through. When they do not (a full disk, an I/O error, a file made
read-only, a revoked privilege): one ERROR line, systemd's status and ``tgmonitor status`` say DEGRADED with
the reason, and the operator destinations are told directly through Apprise (the outbox is in the database
that refuses writes). Polls go on failing harmlessly meanwhile (nothing half-stored, cursors unmoved). When
writes work again: one line, the incident is recorded (opened when the trouble began, closed now) and the
operator is told through the outbox.

A SQLite file deleted (or replaced) under the running service is worse: SQLite would go on writing into the
unlinked inode and everything from then on would vanish at exit. The service saves what it has open to
``<file>.recovered-<time>`` beside it, tells the operator directly and stops (exit 1); a restart then refuses
to begin again with an empty database (``missing_database`` in :mod:`monitor.runtime`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import text

from monitor import health
from monitor.alerts.outbox import enqueue_operator_alert
from monitor.logs import event
from monitor.models import now
from monitor.runtime import Runtime, database_problem, remember
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, EXIT_FAILURE, ServiceContext, log
from monitor.service.dbfile import FileWatch

CHECK_SECONDS = health.HEARTBEAT_SECONDS  # each check writes the heartbeat: status counts on that rhythm
#: while writes keep failing, the ERROR line is repeated this often (the state itself is always visible)
REMIND_SECONDS = 300.0
JOB = "dbcheck"
SUBJECT = "database"


class DatabaseWatch:
    """Notices a database that refuses writes (and recovers), or a SQLite file deleted under the service."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook) -> None:
        self.ctx = ctx
        self.book = book
        self.file: FileWatch | None = None
        #: a read-only connection kept open on the SQLite file from the start: if the file is deleted, it still
        #: reads the deleted inode, from which the data is saved (the engine's pool may have no idle
        #: connection then, and a new one cannot open a deleted file)
        self.keep: sqlite3.Connection | None = None
        self.failing_since: datetime | None = None
        self.reason: str | None = None
        self._reminded = 0.0
        self.checks = 0  # checks done
        self.checking = False
        ctx.db_failure_hook = self.failed

    def open(self, rt: Runtime) -> None:
        """The database is open: remember its file (a restart must not silently begin again without it) and
        watch it; the service's state is ``ok``."""
        remember(rt.settings)
        self.file = FileWatch.open(rt.settings)
        if self.file is not None:
            try:
                self.keep = sqlite3.connect(f"file:{quote(str(self.file.path))}?mode=ro", uri=True,
                                            check_same_thread=False)
                # one read now: it opens the WAL and its index, which a read after the file is gone cannot
                self.keep.execute("SELECT count(*) FROM sqlite_master").fetchall()
            except sqlite3.Error as exc:
                event(log, logging.WARNING, "cannot keep the database file open", error=str(exc))
        health.write_service_state(rt.settings, "ok")

    def add_job(self) -> None:
        """The check every ``CHECK_SECONDS``."""
        self.ctx.add_job(self.check_job, JOB, CHECK_SECONDS, first=CHECK_SECONDS)

    def failed(self, exc: BaseException) -> None:
        """A part met an error: when it is the database's, check now rather than at the next round."""
        if (self.ctx.rt is not None and not self.checking
                and database_problem(exc, self.ctx.settings.database.url) is not None):
            self.ctx.wake(JOB)

    def close(self) -> None:
        """The service stops: no state to show any more."""
        health.clear_service_state(self.ctx.settings)
        if self.keep is not None:
            self.keep.close()
            self.keep = None

    # ------------------------------------------------------------------ the check

    async def check_job(self) -> None:
        """The file is still ours, and a write gets through; act on a change either way."""
        ctx = self.ctx
        with ctx.track():
            if ctx.stopping or ctx.rt is None:
                return
            self.checking = True
            try:
                await self._check(ctx.rt)
            finally:
                self.checks += 1
                self.checking = False

    async def _check(self, rt: Runtime) -> None:
        if self.file is not None:
            gone = self.file.problem()
            if gone is not None:
                await self._file_gone(rt, gone)
                return
        try:
            await self._probe(rt)
        except Exception as exc:
            await self._failing(rt, database_problem(exc, rt.settings.database.url) or f"{type(exc).__name__}: {exc}")
            return
        if self.failing_since is not None:
            await self._recovered(rt)

    async def _probe(self, rt: Runtime) -> None:
        """One real write, committed: this process's heartbeat (or, before it has one, a no-op UPDATE)."""
        if self.book.leases is not None:
            await self.book.leases.heartbeat()
            return
        async with rt.engine.begin() as conn:
            await conn.execute(text("UPDATE service_nodes SET seen_at = seen_at WHERE 1 = 0"))

    async def _failing(self, rt: Runtime, reason: str) -> None:
        ctx = self.ctx
        t = now()
        if self.failing_since is not None:
            if (t - self.failing_since).total_seconds() - self._reminded >= REMIND_SECONDS:
                self._reminded = (t - self.failing_since).total_seconds()
                event(log, logging.ERROR, f"database writes are still failing: {reason}",
                      since=self.failing_since.isoformat())
            return
        self.failing_since, self.reason, self._reminded = t, reason, 0.0
        event(log, logging.ERROR, f"database writes are failing: {reason}")
        ctx.degraded = f"database writes failing: {reason}"
        health.write_service_state(rt.settings, "degraded", reason=ctx.degraded, since=t)
        ctx.update_status(force=True)
        title, body = health.incident_text(health.DATABASE_WRITES, SUBJECT, reason)
        await self._tell_directly(rt, title, body)

    async def _recovered(self, rt: Runtime) -> None:
        ctx = self.ctx
        since, reason = self.failing_since, self.reason or "writes failed"
        assert since is not None
        try:
            # The incident, for the record: opened when the writes began to fail (the operator was told
            # directly then), closed now; and the all-clear through the outbox, which works again.
            operators = [a.name for a in rt.settings.alerts if a.operator]
            await health.open_incident(rt.engine, rt.settings, health.DATABASE_WRITES, SUBJECT, reason,
                                       exclude_destinations=operators, opened_at=since)
            await health.close_incidents(rt.engine, health.DATABASE_WRITES)
            took = round((now() - since).total_seconds())
            await enqueue_operator_alert(
                rt.engine, rt.settings, title="tgmonitor: база данных снова принимает запись",
                body=f"The database accepts writes again after {took} s ({reason}). Polling and delivery "
                     "go on; nothing was lost.", key=f"{health.DATABASE_WRITES}:recovered:{since.isoformat()}")
        except Exception as exc:
            await self._failing(rt, database_problem(exc, rt.settings.database.url) or str(exc))
            return
        event(log, logging.INFO, "database writes work again", down_for=took)
        self.failing_since = self.reason = None
        ctx.degraded = None
        health.write_service_state(rt.settings, "ok")
        ctx.update_status(force=True)
        ctx.wake(DRAIN_JOB)

    async def _file_gone(self, rt: Runtime, problem: str) -> None:
        """The SQLite file is not the one we write any more: save what we have, say so, stop."""
        ctx = self.ctx
        saved = await self._rescue() if self.file is not None and not self.file.path.exists() else None
        where = (f"what the service had stored is saved to {saved}: stop everything, move it back to "
                 f"{self.file.path if self.file else 'the database path'} and start again" if saved else
                 "nothing could be saved from it")
        line = f"{problem}: stopping ({where})"
        event(log, logging.ERROR, line)
        ctx.degraded = problem
        title, body = health.incident_text(health.DATABASE_WRITES, SUBJECT, line)
        await self._tell_directly(rt, title, body)
        ctx.exit_code = EXIT_FAILURE
        ctx.stop_event.set()

    async def _rescue(self) -> str | None:
        """``VACUUM INTO`` a file beside the deleted one, through the connection kept open on it (a new
        connection cannot open a deleted file: the engine opens SQLite files with ``mode=rw``)."""
        assert self.file is not None
        if self.keep is None:
            return None
        keep = self.keep
        target = self.file.rescue_path(now().strftime("%Y%m%dT%H%M%SZ"))

        def vacuum() -> None:
            # created private first: the archive is private, and VACUUM INTO keeps an existing empty file's mode
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            keep.execute("VACUUM INTO ?", (str(target),))

        try:
            await asyncio.to_thread(vacuum)
        except Exception as exc:
            event(log, logging.WARNING, "could not save the deleted database", error=f"{type(exc).__name__}: {exc}")
            return None
        return str(target)

    async def _tell_directly(self, rt: Runtime, title: str, body: str) -> None:
        """Send to every operator destination now, past the outbox (which lives in the database)."""
        operators = [a for a in rt.settings.alerts if a.operator]
        if not operators:
            return
        from monitor.alerts.deliver import send
        from monitor.alerts.render import Message

        for dest in operators:
            res = await send(dest, Message(title, body))
            if not res.ok:
                event(log, logging.WARNING, "could not tell the operator", destination=dest.name, error=res.error)
