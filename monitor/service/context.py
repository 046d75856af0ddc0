"""What the parts of the service share: the settings and runtime, the APScheduler jobs (add, remove, wake),
the work in flight (for a clean stop), the watchdog's progress mark, the metrics and the systemd notifier.

Every part gets this one object; none of them reaches into another part's state through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Settings
from monitor.lock import SessionLock, lock_path
from monitor.logs import event
from monitor.metrics import Metrics
from monitor.models import now
from monitor.notify import Notifier
from monitor.runtime import Runtime

# The service logged as "monitor.scheduler" before it was split into parts; the name is kept so that log lines
# ("scheduler: poll …") and the filters people built on them stay as they were.
log = logging.getLogger("monitor.scheduler")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_SESSION = 0, 1, 2, 78

STOP_GRACE = 6.0  # seconds the work in flight gets after SIGTERM; the rest of the 10 s is for closing
CLOSE_TIMEOUT = 2.0
LOGIN_HINT = ("the Telegram session is not authorised: run `tgmonitor login` (as the service's user, with the "
              "same configuration), then start the service again")

#: scheduler job ids; a part wakes another part's job by its id
DRAIN_JOB = "drain"


def poll_cycle_job_id(source: str) -> str:
    """The scheduler job that runs the poll cycles of one source kind (``telethon``, ``web``)."""
    return f"poll-cycle:{source}"


def reread_job_id(source: str) -> str:
    """The scheduler job that re-reads a source's recent posts for edits and deletions."""
    return f"reread:{source}"


class ServiceContext:
    """The state every part of one ``tgmonitor run`` process reads: settings, runtime, scheduler, stop flag."""

    def __init__(self, settings: Settings, config_path: Path | None, *, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.config_path = config_path if config_path is not None else settings.path
        self.notifier = Notifier(env)
        self.metrics = Metrics()
        self.lock = SessionLock(lock_path(settings))
        self.scheduler: AsyncIOScheduler | None = None
        self.rt: Runtime | None = None
        self.inflight: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.started = time.monotonic()
        self.last_progress = time.monotonic()
        self.last_poll: tuple[str, datetime, str] | None = None  # channel, when, "ok"/"error"
        self._warned: set[str] = set()
        #: the status line shown by systemd; the Service sets it to its status part's ``update``
        self.status_hook: Callable[[bool], None] = lambda force: None
        #: a part met an error (the database watch checks at once when it is the database's)
        self.db_failure_hook: Callable[[BaseException], None] = lambda exc: None
        #: why the service is degraded (the database refuses writes), shown in the status line; None when well
        self.degraded: str | None = None
        #: what ``tgmonitor run`` exits with after a stop (a stop the service decided itself may be a failure)
        self.exit_code = EXIT_OK

    # ------------------------------------------------------------------ scheduler jobs

    def add_job(self, fn: Callable[..., Awaitable[Any]], job_id: str, every: float, *, first: float = 0.0,
                jitter: float | None = None, args: tuple[Any, ...] = (),
                next_run: datetime | None = None, max_instances: int = 1) -> None:
        """Run ``fn(*args)`` every ``every`` seconds (± ``jitter``), one instance at a time (unless the job
        guards itself and asks for more), missed runs coalesced; the first run after ``first`` seconds or at
        ``next_run``. Replaces a job of that id."""
        assert self.scheduler is not None
        self.scheduler.add_job(
            fn, IntervalTrigger(seconds=every, jitter=jitter or None, timezone="UTC"), args=args, id=job_id,
            replace_existing=True, max_instances=max_instances, coalesce=True, misfire_grace_time=None,
            next_run_time=next_run or (now() + timedelta(seconds=first)))

    def remove_job(self, job_id: str) -> None:
        """Remove a job if it is scheduled."""
        if self.scheduler is not None and self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)

    def wake(self, job_id: str) -> None:
        """Run a job now instead of at its next time (e.g. the drain right after a poll queued alerts)."""
        if self.scheduler is None or self.stopping:
            return
        job = self.scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=now())

    # ------------------------------------------------------------------ work in flight

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Mark the current task as work in flight (a stop waits for it) and, when it ends, as progress."""
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            yield
        finally:
            self.inflight.discard(task)
            self.progress()

    def progress(self) -> None:
        """Something finished: the systemd watchdog keeps being fed while this happens."""
        self.last_progress = time.monotonic()
        self.metrics.last_progress.set(time.time())

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Run ``coro`` in the background; a stop waits for it like for a job."""
        t = asyncio.ensure_future(coro)
        t.set_name(name)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    # ------------------------------------------------------------------ messages

    def update_status(self, force: bool = False) -> None:
        """Refresh systemd's STATUS= line (at most every few seconds unless ``force``)."""
        self.status_hook(force)

    def database_failed(self, exc: BaseException) -> None:
        """Report an error a part met; when it is the database's, its writes are checked at once."""
        self.db_failure_hook(exc)

    def warn_once(self, key: str, msg: str) -> None:
        """Log ``msg`` the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            event(log, logging.WARNING, msg)
