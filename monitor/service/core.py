"""The small :class:`Service` of ``tgmonitor run``: builds the parts, wires them together and owns the
lifecycle: the session lock, the signals (SIGTERM/SIGINT stop, a second one exits at once; SIGHUP reloads), the
start sequence and the clean stop.

A stop lets the page being stored and the delivery in flight finish (up to ``STOP_GRACE`` seconds; a
transaction cut short rolls back whole), gives the leases back, disconnects Telegram and returns 0."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import backfill_queue, health
from monitor.config import Settings
from monitor.jobs.base import SessionDead
from monitor.lock import LockHeld
from monitor.logs import event
from monitor.runtime import Runtime, database_problem, missing_database, open_runtime
from monitor.service.backfills import BackfillWorker
from monitor.service.channels import ChannelBook
from monitor.service.context import (
    EXIT_FAILURE,
    EXIT_NO_SESSION,
    EXIT_OK,
    EXIT_USAGE,
    LOGIN_HINT,
    STOP_GRACE,
    ServiceContext,
    log,
)
from monitor.service.dbwatch import DatabaseWatch
from monitor.service.delivery import Delivery
from monitor.service.health import HealthKeeper
from monitor.service.leasing import LeaseKeeper
from monitor.service.pace import Pace
from monitor.service.polling import Poller
from monitor.service.push import PushKeeper
from monitor.service.reload import Reloader
from monitor.service.runners import Runners
from monitor.service.telegram import SetupError, TelegramLink

if TYPE_CHECKING:
    from monitor.dashboard.server import DashboardServer


class Service:
    """The ``tgmonitor run`` process. ``await Service(settings, config_path).run()`` returns the exit code."""

    def __init__(self, settings: Settings, config_path: Path | None, *,
                 env: dict[str, str] | None = None) -> None:
        ctx = self.ctx = ServiceContext(settings, config_path, env=env)
        self.book = ChannelBook(ctx)
        self.runners = Runners(ctx)
        self.link = TelegramLink(ctx, self.book, self.runners)
        self.poller = Poller(ctx, self.book, self.runners, self.link)
        self.leaser = LeaseKeeper(ctx, self.book, self.poller, self.link)
        self.delivery = Delivery(ctx, self.book)
        self.backfills = BackfillWorker(ctx, self.runners, self.link)
        self.health = HealthKeeper(ctx, self.book, self.link)
        self.dbwatch = DatabaseWatch(ctx, self.book)
        self.reloader = Reloader(ctx, self.book, self.runners, self.poller, self.leaser)
        self.pusher = PushKeeper(ctx, self.book, self.runners, self.poller, self.link)
        self.poller.interval_hook = Pace(ctx, self.book, self.runners, self.pusher).interval
        ctx.status_hook = self.health.update_status
        self.signals = 0
        self.web: DashboardServer | None = None  # [web] listen: the dashboard, served by this process too

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload replaces them)."""
        return self.ctx.settings

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        """Start, serve until a stop signal, stop cleanly. Returns the process exit code."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        watchdog = asyncio.create_task(self.health.watchdog_loop(), name="watchdog")
        try:
            try:
                ctx.lock.acquire()
            except LockHeld as exc:
                event(log, logging.ERROR, str(exc))
                return EXIT_FAILURE
            except OSError as exc:
                event(log, logging.ERROR, "cannot create the session lock", path=str(ctx.lock.path),
                      error=exc.strerror or str(exc))
                return EXIT_FAILURE
            try:
                return await self._serve()
            finally:
                ctx.lock.release()
        finally:
            watchdog.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            ctx.metrics.close()
            ctx.notifier.close()

    async def reload(self) -> bool:
        """Re-read the configuration (what SIGHUP does); False when it was refused."""
        done = await self.reloader.reload()
        if done and self.web is not None:  # the dashboard shows the entities/channels/destinations now in force
            self.web.use_settings(self.ctx.settings)
        return done

    async def _serve(self) -> int:
        ctx = self.ctx
        missing = missing_database(ctx.settings)
        if missing is not None:
            # never begin again with an empty archive because the file was deleted or moved away
            event(log, logging.ERROR, missing)
            return EXIT_FAILURE
        ctx.notifier.status("starting: migrating the database")
        try:
            async with open_runtime(ctx.settings) as rt:
                ctx.rt = rt
                ctx.progress()
                return await self._serve_runtime(rt)
        except SessionDead as exc:
            event(log, logging.ERROR, LOGIN_HINT, reason=str(exc))
            return EXIT_NO_SESSION
        except SetupError as exc:
            event(log, logging.ERROR, str(exc))
            return EXIT_USAGE
        except Exception as exc:  # a database that cannot be reached, a broken migration: one line, exit 1
            problem = database_problem(exc, ctx.settings.database.url)
            if problem is not None:
                # names the database (password hidden) and what to do, like every command and run --once
                event(log, logging.ERROR, f"the service cannot run: {problem}")
            else:
                event(log, logging.ERROR, "the service cannot run", error=f"{type(exc).__name__}: {exc}")
            return EXIT_FAILURE
        finally:
            ctx.rt = None

    async def _serve_runtime(self, rt: Runtime) -> int:
        ctx = self.ctx
        s = ctx.settings
        if ctx.stop_event.is_set():
            return EXIT_OK
        self.dbwatch.open(rt)
        if any(c.enabled and c.source == "telethon" for c in s.channels):
            ctx.notifier.status("starting: checking the Telegram session")
            authorised = await self.link.session_authorised(rt)
            if authorised is False:
                event(log, logging.ERROR, LOGIN_HINT)
                return EXIT_NO_SESSION
            if authorised:
                await health.close_incidents(rt.engine, health.SESSION_DEAD)
            # None: Telegram cannot be reached now; the Telethon jobs retry with backoff (a session found
            # dead then stops them), everything else starts.
        leases = self.leaser.open(rt)
        await self.delivery.release_own_claims(rt)
        await self.book.register(s)
        live = await leases.heartbeat()
        if live <= 1:
            # Alone on this database: requests left "running" by a crashed process are ours to resume.
            await backfill_queue.requeue_running(rt.engine)
        ctx.metrics.serve(s.metrics.listen)
        if s.dashboard.listen:
            from monitor.dashboard.server import start_in_service

            self.web = start_in_service(s, rt.engine, ctx.spawn)

        sched = ctx.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone="UTC")
        sched.start()
        self.pusher.prepare()  # before the first poll connects: the client must be built to receive updates
        await self.leaser.rebalance()
        self.pusher.start()
        # The periodic parts; a new one adds its job here (see monitor/service/__init__.py).
        self.leaser.add_job()
        self.delivery.add_job()
        self.backfills.add_job()
        self.health.add_jobs()
        self.dbwatch.add_job()
        self.poller.schedule_rereads()
        ctx.progress()
        n = len(self.book.channels)
        ctx.notifier.ready(f"polling {len(leases.held)} of {n} channels")
        event(log, logging.INFO, "service started", channels=n, leased=len(leases.held),
              owner=leases.owner, pid=os.getpid())
        await ctx.stop_event.wait()
        await self._shutdown()
        return ctx.exit_code

    # ------------------------------------------------------------------ signals

    def _on_stop_signal(self, sig: int) -> None:
        self.signals += 1
        if self.signals > 1:
            # The operator insists: leave now. SQLite/PostgreSQL transactions not yet committed roll back.
            os.write(2, b"tgmonitor: second signal, exiting at once\n")
            os._exit(128 + sig)
        event(log, logging.INFO, "stopping", signal=signal.Signals(sig).name)
        self.ctx.stop_event.set()

    def _on_reload_signal(self) -> None:
        if self.ctx.rt is None or self.ctx.stopping:
            return
        self.ctx.spawn(self.reload(), "reload")

    # ------------------------------------------------------------------ stop

    async def _shutdown(self) -> None:
        ctx = self.ctx
        ctx.stopping = True
        ctx.notifier.stopping("stopping: finishing the work in flight")
        if self.web is not None:
            self.web.stop()  # its task finishes the requests in flight and ends within the grace below
        t0 = time.monotonic()
        if ctx.scheduler is not None:
            ctx.scheduler.pause()  # no new job runs; the running ones finish below
        work = {t for t in ctx.inflight if not t.done()} | {t for t in ctx.background if not t.done()}
        if work:
            _done, late = await asyncio.wait(work, timeout=STOP_GRACE)
            for t in late:
                t.cancel()  # an unfinished page's transaction rolls back whole
            if late:
                event(log, logging.WARNING, "work cut short at stop", tasks=len(late))
                await asyncio.wait(late, timeout=1.0)
        self.runners.cancel_all()
        await self.backfills.requeue_running()
        leases = self.book.leases
        if leases is not None:
            try:
                await asyncio.wait_for(leases.release_all(), 1.5)
            except (TimeoutError, Exception) as exc:
                event(log, logging.WARNING, "leases not released (they expire by themselves)", error=str(exc))
        if ctx.scheduler is not None:
            ctx.scheduler.shutdown(wait=False)
        await self.runners.close_all()  # disconnects Telegram
        self.dbwatch.close()
        event(log, logging.INFO, "stopped", seconds=round(time.monotonic() - t0, 1))
