"""``tgmonitor run``: the long-running service on APScheduler's AsyncIOScheduler.

Jobs:
- a poll per channel this process holds the lease of: its interval, the first poll at start, then
  ``[schedule] jitter`` × interval of random spread, one instance at a time, missed runs coalesced. Polls
  that fall due together are handed to the source as one batch (a Telethon poll of many joined channels
  costs one ``GetPeerDialogs`` call, not one call per channel);
- the edit/deletion re-read, when the source offers one (the Telethon jobs own the logic);
- the outbox drain every ``DRAIN_SECONDS`` and right after a poll that queued alerts, so an alert leaves
  within seconds of the poll that found it;
- queued backfills (``backfill_requests``, from ``tgmonitor backfill`` while this process holds the lock);
- leases (several processes on one PostgreSQL share the channels, see monitor/leases.py);
- health (operator incidents, Prometheus gauges, systemd STATUS=) and housekeeping (old ``fetch_runs``,
  SQLite ``PRAGMA optimize``).

Signals: SIGHUP re-reads the configuration (a config that no longer validates is reported and the old one
kept); SIGTERM/SIGINT stop taking new work, let the page being stored and the delivery in flight finish
(up to ``STOP_GRACE`` seconds; a transaction cut short rolls back whole), disconnect Telegram and return 0;
a second signal exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from monitor import backfill_queue, health
from monitor import models as m
from monitor.config import ChannelConfig, ConfigError, Settings, load_settings
from monitor.db import is_sqlite, sessionmaker
from monitor.ingest import Ingestor
from monitor.jobs import PollReport, SessionDead, SourceJobs, source_jobs
from monitor.leases import Leases, owner_name
from monitor.lock import LockHeld, SessionLock, lock_path
from monitor.logs import event, register_secret, setup_logging
from monitor.metrics import Metrics
from monitor.models import now
from monitor.notify import Notifier
from monitor.runtime import Runtime, compile_watchlist, make_planner, open_runtime
from monitor.service import source_unreachable

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_SESSION = 0, 1, 2, 78

DRAIN_SECONDS = 2.0  # outbox drain period: alerts leave well within 10 s of the poll that queued them
BACKFILL_SECONDS = 2.0  # how often the queue of backfill requests is looked at
HEALTH_SECONDS = 30.0
HOUSEKEEPING_SECONDS = 3600.0
BATCH_WINDOW = 0.2  # polls falling due within this window go to the source as one batch
STOP_GRACE = 6.0  # seconds the work in flight gets after SIGTERM; the rest of the 10 s is for closing
CLOSE_TIMEOUT = 2.0
RUNS_KEPT = timedelta(days=30)
LOGIN_HINT = ("the Telegram session is not authorised: run `tgmonitor login` (as the service's user, with the "
              "same configuration), then start the service again")


#: Telegram unreachable: the Telethon jobs retry the connection after 30 s, 60 s, 120 s … at most 10 min.
TG_RETRY_FIRST = 30.0
TG_RETRY_MAX = 600.0
#: An outage this long becomes an operator incident (short blips, common where Telegram is throttled, do not).
TG_INCIDENT_AFTER = 900.0
TELEGRAM_UNREACHABLE = "telegram_unreachable"


class RetryBackoff:
    """When to try a connection again: exponential backoff with jitter, capped (like tenacity's
    ``wait_exponential_jitter``): the n-th failure in a row waits ``min(cap, first·2ⁿ⁻¹)`` less up to
    ``jitter`` of it at random, so that many processes cut off together do not come back in the same second.

    Failures of one attempt count once: the channels of one poll batch all fail with the same error, and
    a failure reported before ``next_try`` belongs to the attempt already counted. ``clock`` is monotonic
    seconds (tests pass a fake)."""

    def __init__(self, first: float = TG_RETRY_FIRST, cap: float = TG_RETRY_MAX, *, jitter: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, rand: Callable[[], float] = random.random) -> None:
        self.first, self.cap, self.jitter = first, cap, jitter
        self.clock, self.rand = clock, rand
        self.failures = 0
        self.since: float | None = None  # when the outage began
        self.next_try = 0.0
        self.reason = ""

    @property
    def down(self) -> bool:
        return self.since is not None

    def delay(self, failures: int) -> float:
        base = min(self.cap, self.first * 2 ** max(0, failures - 1))
        return base * (1.0 - self.jitter * self.rand())

    def failed(self, reason: str) -> float | None:
        """Record a failed attempt; the wait before the next one, or None when this failure belongs to the
        attempt already counted."""
        t = self.clock()
        if self.since is not None and t < self.next_try:
            return None
        if self.since is None:
            self.since = t
        self.failures += 1
        self.reason = reason
        d = self.delay(self.failures)
        self.next_try = t + d
        return d

    def waiting(self) -> float:
        """Seconds until the next attempt may be made (0: now)."""
        return max(0.0, self.next_try - self.clock()) if self.down else 0.0

    def down_for(self) -> float:
        return self.clock() - self.since if self.since is not None else 0.0

    def recovered(self) -> float | None:
        """The connection works again: how long it was down (None when it was not), and start afresh."""
        if self.since is None:
            return None
        took = self.down_for()
        self.failures, self.since, self.next_try, self.reason = 0, None, 0.0, ""
        return took


class _SetupError(Exception):
    """The configuration cannot work (e.g. a client factory that fails): exit 2, do not restart."""


class _SourceRunner:
    """One source's jobs object plus the batching of due polls; tracks its work in flight."""

    def __init__(self, source: str, jobs: SourceJobs) -> None:
        self.source = source
        self.jobs = jobs
        self.pending: list[tuple[ChannelConfig, asyncio.Future[PollReport | None]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.busy = 0

    async def poll(self, cfg: ChannelConfig) -> PollReport | None:
        fut: asyncio.Future[PollReport | None] = asyncio.get_running_loop().create_future()
        self.pending.append((cfg, fut))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush_soon(), name=f"poll-batch-{self.source}")
        return await fut

    async def _flush_soon(self) -> None:
        await asyncio.sleep(BATCH_WINDOW)
        batch, self.pending = self.pending, []
        self.flusher = None
        batch = [(c, f) for c, f in batch if not f.done()]
        if not batch:
            return
        self.busy += 1
        try:
            reports = await self.jobs.poll([c for c, _ in batch])
        except BaseException as exc:
            for _, f in batch:
                if not f.done():
                    if isinstance(exc, asyncio.CancelledError):
                        f.cancel()
                    else:
                        f.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.busy -= 1
        by_name: dict[str, PollReport] = {}
        for r in reports:
            by_name[r.channel.lower().lstrip("@")] = r
        for i, (c, f) in enumerate(batch):
            if f.done():
                continue
            r = next((by_name[n] for n in _names(c) if n in by_name), None)
            if r is None and len(reports) == len(batch):
                r = reports[i]
            f.set_result(r)

    @property
    def idle(self) -> bool:
        return self.busy == 0 and not self.pending

    def cancel(self) -> None:
        if self.flusher is not None and not self.flusher.done():
            self.flusher.cancel()
        for _, f in self.pending:
            if not f.done():
                f.cancel()
        self.pending = []


def _names(c: ChannelConfig) -> list[str]:
    out = []
    if c.username:
        out.append(c.username.lower())
    if c.id is not None:
        out.append(str(c.id))
    out.append(c.key.lower().lstrip("@"))
    return out


class Service:
    """The ``tgmonitor run`` process. ``await Service(settings, config_path).run()`` returns the exit code."""

    def __init__(self, settings: Settings, config_path: Path | None, *,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.config_path = config_path if config_path is not None else settings.path
        self.notifier = Notifier(env)
        self.metrics = Metrics()
        self.lock = SessionLock(lock_path(settings))
        self.scheduler: AsyncIOScheduler | None = None
        self.rt: Runtime | None = None
        self.leases: Leases | None = None
        self.runners: dict[str, _SourceRunner] = {}
        self.dead_sources: set[str] = set()
        self.channels: dict[str, ChannelConfig] = {}  # key -> config (enabled ones)
        self.row_ids: dict[str, int] = {}  # key -> channels.id
        self.polling: set[int] = set()  # channel ids being polled now
        self.inflight: set[asyncio.Task[Any]] = set()
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.signals = 0
        self.started = time.monotonic()
        self.last_progress = time.monotonic()
        self.last_poll: tuple[str, datetime, str] | None = None
        self.backfill_running: int | None = None
        self.background: set[asyncio.Task[Any]] = set()
        self._warned: set[str] = set()
        self._status_at = 0.0
        self.tg = RetryBackoff()  # Telegram's connection: backoff while it cannot be reached
        self.tg_incident = False

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        """Start, serve until a stop signal, stop cleanly. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        watchdog = asyncio.create_task(self._watchdog_loop(), name="watchdog")
        try:
            try:
                self.lock.acquire()
            except LockHeld as exc:
                event(log, logging.ERROR, str(exc))
                return EXIT_FAILURE
            except OSError as exc:
                event(log, logging.ERROR, "cannot create the session lock", path=str(self.lock.path),
                      error=exc.strerror or str(exc))
                return EXIT_FAILURE
            try:
                return await self._serve()
            finally:
                self.lock.release()
        finally:
            watchdog.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.metrics.close()
            self.notifier.close()

    async def _serve(self) -> int:
        self.notifier.status("starting: migrating the database")
        try:
            async with open_runtime(self.settings) as rt:
                self.rt = rt
                self._progress()
                return await self._serve_runtime(rt)
        except SessionDead as exc:
            event(log, logging.ERROR, LOGIN_HINT, reason=str(exc))
            return EXIT_NO_SESSION
        except _SetupError as exc:
            event(log, logging.ERROR, str(exc))
            return EXIT_USAGE
        except Exception as exc:  # a database that cannot be reached, a broken migration: one line, exit 1
            event(log, logging.ERROR, "the service cannot run", error=f"{type(exc).__name__}: {exc}")
            return EXIT_FAILURE
        finally:
            self.rt = None

    async def _serve_runtime(self, rt: Runtime) -> int:
        s = self.settings
        if self.stop_event.is_set():
            return EXIT_OK
        if any(c.enabled and c.source == "telethon" for c in s.channels):
            self.notifier.status("starting: checking the Telegram session")
            authorised = await self._session_authorised(rt)
            if authorised is False:
                event(log, logging.ERROR, LOGIN_HINT)
                return EXIT_NO_SESSION
            if authorised:
                await health.close_incidents(rt.engine, health.SESSION_DEAD)
            # None: Telegram cannot be reached now; the Telethon jobs retry with backoff (a session found
            # dead then stops them), everything else starts.
        self.leases = Leases(rt.engine, owner_name(self.lock.path), s.schedule.lease_seconds)
        await self._release_own_claims(rt)
        await self._register_channels(s)
        live = await self.leases.heartbeat()
        if live <= 1:
            # Alone on this database: requests left "running" by a crashed process are ours to resume.
            await backfill_queue.requeue_running(rt.engine)
        self.metrics.serve(s.metrics.listen)

        sched = self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone="UTC")
        sched.start()
        change = await self.leases.rebalance(self.row_ids.values(), self.polling)
        self._apply_leases(change.gained, change.lost, first=True)
        ttl = s.schedule.lease_seconds
        self._add_job(self._lease_job, "leases", max(1.0, ttl / 3), first=ttl / 3)
        self._add_job(self._drain_job, "drain", DRAIN_SECONDS, first=0.5)
        self._add_job(self._backfill_job, "backfill", BACKFILL_SECONDS, first=1.0)
        self._add_job(self._health_job, "health", HEALTH_SECONDS, first=5.0)
        self._add_job(self._housekeeping_job, "housekeeping", HOUSEKEEPING_SECONDS, first=60.0)
        wd = self.notifier.watchdog_seconds
        if wd:
            # A database round trip proves more than a live event loop: no ping when the DB is wedged.
            self._add_job(self._heartbeat_job, "heartbeat", max(0.5, wd / 4), first=0.1)
        self._schedule_rereads()
        self._progress()
        n = len(self.channels)
        self.notifier.ready(f"polling {len(self.leases.held)} of {n} channels")
        event(log, logging.INFO, "service started", channels=n, leased=len(self.leases.held),
              owner=self.leases.owner, pid=os.getpid())
        await self.stop_event.wait()
        await self._shutdown()
        return EXIT_OK

    # ------------------------------------------------------------------ signals

    def _on_stop_signal(self, sig: int) -> None:
        self.signals += 1
        if self.signals > 1:
            # The operator insists: leave now. SQLite/PostgreSQL transactions not yet committed roll back.
            os.write(2, b"tgmonitor: second signal, exiting at once\n")
            os._exit(128 + sig)
        event(log, logging.INFO, "stopping", signal=signal.Signals(sig).name)
        self.stop_event.set()

    def _on_reload_signal(self) -> None:
        if self.rt is None or self.stopping:
            return
        self._spawn(self.reload(), "reload")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        t = asyncio.ensure_future(coro)
        t.set_name(name)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    # ------------------------------------------------------------------ jobs plumbing

    def _add_job(self, fn: Callable[..., Awaitable[Any]], job_id: str, every: float, *, first: float = 0.0,
                 jitter: float | None = None, args: tuple[Any, ...] = (),
                 next_run: datetime | None = None) -> None:
        assert self.scheduler is not None
        self.scheduler.add_job(
            fn, IntervalTrigger(seconds=every, jitter=jitter or None, timezone="UTC"), args=args, id=job_id,
            replace_existing=True, max_instances=1, coalesce=True, misfire_grace_time=None,
            next_run_time=next_run or (now() + timedelta(seconds=first)))

    @contextlib.contextmanager
    def _track(self) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            yield
        finally:
            self.inflight.discard(task)
            self._progress()

    def _progress(self) -> None:
        self.last_progress = time.monotonic()
        self.metrics.last_progress.set(time.time())

    def _runner(self, source: str) -> _SourceRunner:
        r = self.runners.get(source)
        if r is None:
            assert self.rt is not None
            r = self.runners[source] = _SourceRunner(source, source_jobs(self.rt, source))
        return r

    # ------------------------------------------------------------------ channels and leases

    async def _register_channels(self, s: Settings) -> None:
        """A channels row for every enabled channel (leases live on the rows)."""
        assert self.rt is not None
        store = self.rt.store
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

    def _key_of(self, row_id: int) -> str | None:
        return next((k for k, v in self.row_ids.items() if v == row_id), None)

    def _apply_leases(self, gained: set[int], lost: set[int], *, first: bool = False,
                      last_poll: dict[int, datetime | None] | None = None) -> None:
        assert self.scheduler is not None
        for rid in lost:
            key = self._key_of(rid)
            if key is not None:
                self._remove_job(f"poll:{key}")
                event(log, logging.INFO, "lease given up", channel=key)
        for rid in gained:
            key = self._key_of(rid)
            if key is None:
                continue
            cfg = self.channels[key]
            if cfg.source in self.dead_sources:
                continue
            interval = self.settings.channel_interval(cfg)
            start = now()
            prev = (last_poll or {}).get(rid)
            if not first and prev is not None:
                # Taken over from another process: keep its rhythm instead of polling twice in one interval.
                start = max(start, prev + timedelta(seconds=interval))
            self._add_job(self._poll_job, f"poll:{key}", interval, jitter=self.settings.schedule.jitter * interval,
                          args=(key,), next_run=start)
            if not first:
                event(log, logging.INFO, "lease taken", channel=key)

    def _remove_job(self, job_id: str) -> None:
        if self.scheduler is not None and self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)

    async def _lease_job(self) -> None:
        with self._track():
            if self.stopping or self.leases is None or self.rt is None:
                return
            try:
                change = await self.leases.rebalance(self.row_ids.values(), self.polling)
            except Exception as exc:
                event(log, logging.WARNING, "lease renewal failed", error=str(exc))
                return
            self.metrics.leased.set(len(change.held))
            if change.gained:
                async with sessionmaker(self.rt.engine)() as sess:
                    res = await sess.execute(select(m.Channel.id, m.Channel.last_poll_at)
                                             .where(m.Channel.id.in_(change.gained)))
                    last = {rid: t for rid, t in res.all()}
            else:
                last = {}
            self._apply_leases(change.gained, change.lost, last_poll=last)

    # ------------------------------------------------------------------ polling

    async def _poll_job(self, key: str) -> None:
        with self._track():
            cfg = self.channels.get(key)
            rid = self.row_ids.get(key)
            if self.stopping or cfg is None or rid is None or cfg.source in self.dead_sources:
                return
            if cfg.source == "telethon" and self.tg.waiting() > 0:
                self._postpone(key)  # Telegram cannot be reached: wait for the next connection attempt
                return
            assert self.leases is not None and self.rt is not None
            try:
                mine = await self.leases.hold(rid)
                if mine is None:
                    return
                if not mine:
                    self._remove_job(f"poll:{key}")
                    return
            except Exception as exc:
                event(log, logging.WARNING, "lease check failed", channel=key, error=str(exc))
                return
            self.polling.add(rid)
            try:
                report = await self._runner(cfg.source).poll(cfg)
            except SessionDead as exc:
                await self._session_died(str(exc))
                return
            except Exception as exc:
                unreachable = source_unreachable(exc)
                if unreachable is not None:
                    await self._telegram_unreachable(unreachable)
                    self._postpone(key)
                    return
                event(log, logging.ERROR, "poll failed", channel=key, error=f"{type(exc).__name__}: {exc}")
                report = PollReport(channel=key, error=str(exc))
            finally:
                self.polling.discard(rid)
            if cfg.source == "telethon" and self.tg.down:
                await self._telegram_back()
            await self._after_poll(cfg, rid, report or PollReport(channel=key))

    async def _after_poll(self, cfg: ChannelConfig, rid: int, r: PollReport) -> None:
        assert self.rt is not None
        self.metrics.observe_poll(cfg.source, new=r.new, edited=r.edited, alerts=r.alerts, requests=r.requests,
                                  error=bool(r.error), deferred=r.deferred_until is not None)
        self._budget_gauges(cfg.source)
        event(log, logging.WARNING if r.error else logging.INFO, "poll", channel=cfg.key, new=r.new,
              edited=r.edited, alerts=r.alerts, requests=r.requests, error=r.error or "")
        self.last_poll = (cfg.key, now(), "error" if r.error else "ok")
        try:
            await self.rt.store.update_channel(rid, last_poll_at=now())
        except Exception as exc:
            event(log, logging.WARNING, "could not record the poll time", channel=cfg.key, error=str(exc))
        if r.alerts:
            self._wake("drain")
        if r.deferred_until is not None and self.scheduler is not None:
            job = self.scheduler.get_job(f"poll:{cfg.key}")
            until = r.deferred_until if r.deferred_until.tzinfo else r.deferred_until.replace(tzinfo=now().tzinfo)
            if job is not None and (job.next_run_time is None or job.next_run_time < until):
                # A flood wait: this channel's next poll waits for it (plus a little jitter), others go on.
                job.modify(next_run_time=until + timedelta(seconds=random.uniform(0, 5)))
        self._update_status()

    def _budget_gauges(self, source: str) -> None:
        runner = self.runners.get(source)
        budget = getattr(runner.jobs, "budget", None) if runner else None
        if budget is not None:
            with contextlib.suppress(Exception):
                self.metrics.budget_used.labels(source).set(float(budget.used))
                self.metrics.budget_wait.labels(source).set(float(budget.wait_time()))

    def _wake(self, job_id: str) -> None:
        if self.scheduler is None or self.stopping:
            return
        job = self.scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=now())

    def _schedule_rereads(self) -> None:
        """The edit/deletion re-read, for sources whose jobs offer ``reread(channels)``."""
        s = self.settings
        for source in {c.source for c in self.channels.values()}:
            if source in self.dead_sources:
                continue
            if not callable(getattr(self._runner(source).jobs, "reread", None)):
                continue
            intervals = [s.channel_interval(c) for c in self.channels.values() if c.source == source]
            every = min(intervals) * s.schedule.reread_every
            self._add_job(self._reread_job, f"reread:{source}", every, first=every, jitter=0.1 * every,
                          args=(source,))

    async def _reread_job(self, source: str) -> None:
        with self._track():
            if self.stopping or source in self.dead_sources or self.leases is None:
                return
            held = self.leases.held
            chans = [c for k, c in self.channels.items() if c.source == source and self.row_ids.get(k) in held]
            if not chans:
                return
            try:
                await self._runner(source).jobs.reread(chans)  # type: ignore[attr-defined]
            except SessionDead as exc:
                await self._session_died(str(exc))
            except Exception as exc:
                unreachable = source_unreachable(exc)
                if unreachable is not None:
                    await self._telegram_unreachable(unreachable)
                    return
                event(log, logging.WARNING, "re-read failed", source=source, error=str(exc))

    def _postpone(self, key: str) -> None:
        """Move a Telethon channel's next poll to the next connection attempt (plus a little spread)."""
        if self.scheduler is None or self.stopping:
            return
        job = self.scheduler.get_job(f"poll:{key}")
        if job is None:
            return
        until = now() + timedelta(seconds=self.tg.waiting() + random.uniform(0, 2))
        if job.next_run_time is None or job.next_run_time < until:
            job.modify(next_run_time=until)

    async def _telegram_unreachable(self, message: str) -> None:
        """Telegram cannot be reached: the Telethon jobs wait for the next attempt (exponential backoff with
        jitter, 30 s … 10 min); the other sources, delivery and everything else go on. An outage that lasts
        ``TG_INCIDENT_AFTER`` becomes one operator incident, closed when the connection is back."""
        wait = self.tg.failed(message)
        if wait is None:
            return  # the same attempt, reported by another channel of its batch
        event(log, logging.WARNING, message, attempt=self.tg.failures, retry_in=round(wait),
              down_for=round(self.tg.down_for()))
        for key, c in self.channels.items():
            if c.source == "telethon":
                self._postpone(key)
        self.notifier.status(f"cannot reach Telegram (retrying in {round(wait)} s); other sources go on")
        if not self.tg_incident and self.tg.down_for() >= TG_INCIDENT_AFTER and self.rt is not None:
            detail = f"{message} (for {round(self.tg.down_for() / 60)} min; retried with backoff)"
            try:
                await health.open_incident(self.rt.engine, self.settings, TELEGRAM_UNREACHABLE, "telegram", detail)
                self.tg_incident = True
            except Exception as exc:
                event(log, logging.WARNING, "could not record the incident", error=str(exc))
            self._wake("drain")

    async def _telegram_back(self) -> None:
        """A Telethon poll got through again: report it, close the incident, resume the normal rhythm."""
        took = self.tg.recovered()
        if took is None:
            return
        event(log, logging.INFO, "Telegram reachable again", down_for=round(took))
        if self.rt is not None:  # also one left open by a process that stopped during an outage
            try:
                await health.close_incidents(self.rt.engine, TELEGRAM_UNREACHABLE)
                self.tg_incident = False
            except Exception as exc:
                event(log, logging.WARNING, "could not close the incident", error=str(exc))
        self._update_status(force=True)

    async def _session_died(self, reason: str) -> None:
        """The Telegram session stopped working: stop the Telethon jobs, tell the operator once, go on."""
        if "telethon" in self.dead_sources:
            return
        self.dead_sources.add("telethon")
        event(log, logging.ERROR, LOGIN_HINT, reason=reason)
        for key, c in self.channels.items():
            if c.source == "telethon":
                self._remove_job(f"poll:{key}")
        self._remove_job("reread:telethon")
        runner = self.runners.pop("telethon", None)
        if runner is not None:
            runner.cancel()
            self._spawn(self._close_runner(runner), "close-telethon")
        if self.rt is not None:
            try:
                await health.open_incident(self.rt.engine, self.settings, health.SESSION_DEAD, "telegram", reason)
            except Exception as exc:
                event(log, logging.WARNING, "could not record the incident", error=str(exc))
            self._wake("drain")
        self.notifier.status("Telegram session dead: run tgmonitor login; other sources go on")

    async def _session_authorised(self, rt: Runtime) -> bool | None:
        """Ask Telegram (``is_user_authorized()`` on a client from the configured factory) whether the session
        is logged in; None when Telegram cannot be reached (then the backoff starts). The client is
        disconnected again before the Telethon jobs open their own: two clients must never use one session at
        the same time."""
        from monitor.sources.telethon import (
            NETWORK_ERRORS,
            ClientSetupError,
            TelegramUnreachable,
            is_session_dead,
            make_client,
            network_reason,
        )

        try:
            client = make_client(rt.settings)
        except ClientSetupError as exc:
            raise _SetupError(str(exc)) from None
        try:
            if not client.is_connected():
                await client.connect()
            return bool(await client.is_user_authorized())
        except NETWORK_ERRORS as exc:
            await self._telegram_unreachable(str(TelegramUnreachable(network_reason(exc))))
            return None
        except Exception as exc:
            if is_session_dead(exc):
                return False
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), CLOSE_TIMEOUT)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ alerts, backfills, health

    async def _release_own_claims(self, rt: Runtime) -> None:
        """Alerts this process (same host and session, before a crash) had claimed but not marked go back to
        the outbox now, instead of after the claim's timeout. The drain claims under the same stable name."""
        assert self.leases is not None
        async with sessionmaker(rt.engine).begin() as sess:
            res = await sess.execute(update(m.Alert).where(m.Alert.claimed_by == self.leases.owner,
                                                           m.Alert.status == "pending")
                                     .values(claimed_by=None, claimed_until=None))
        if res.rowcount:
            event(log, logging.WARNING, "alerts claimed before a crash are due again", alerts=res.rowcount)

    async def _drain_job(self) -> None:
        with self._track():
            if self.stopping or self.rt is None or not self.rt.settings.alerts:
                return
            try:
                from monitor.alerts.deliver import deliver_due
            except ImportError:
                self._warn_once("deliver", "alert delivery is not available in this build")
                return
            try:
                await deliver_due(self.rt, worker=self.leases.owner if self.leases else None)
            except Exception as exc:
                event(log, logging.ERROR, "alert delivery failed", error=f"{type(exc).__name__}: {exc}")

    async def _backfill_job(self) -> None:
        with self._track():
            if self.stopping or self.rt is None:
                return
            engine = self.rt.engine
            try:
                req = await backfill_queue.claim_next(engine)
            except Exception as exc:
                event(log, logging.WARNING, "backfill queue unreadable", error=str(exc))
                return
            if req is None:
                return
            self.backfill_running = req.id
            try:
                await self._run_backfill(req)
            finally:
                self.backfill_running = None

    async def _run_backfill(self, req: m.BackfillRequest) -> None:
        assert self.rt is not None
        engine = self.rt.engine
        from monitor.jobs.backfill import BackfillError, find_configured

        try:
            cfg = find_configured(self.settings, req.channel)
        except BackfillError as exc:
            await backfill_queue.finish(engine, req.id, "failed", error=str(exc))
            return
        if cfg.source in self.dead_sources:
            await backfill_queue.finish(engine, req.id, "failed", error=LOGIN_HINT)
            return
        if cfg.source == "telethon" and self.tg.waiting() > 0:
            await backfill_queue.finish(engine, req.id, "queued")  # runs once Telegram is reachable again
            return
        progress: dict[str, int | None] = {"stored": 0, "total": None}
        written: dict[str, int | None] = {"stored": 0, "total": None}

        def on_progress(stored: int, total: int | None) -> None:
            progress["stored"], progress["total"] = stored, total

        async def writer() -> None:
            while True:
                await asyncio.sleep(1.0)
                if progress != written:
                    written.update(progress)
                    with contextlib.suppress(Exception):
                        await backfill_queue.set_progress(engine, req.id, int(progress["stored"] or 0),
                                                          progress["total"])

        event(log, logging.INFO, "backfill started", channel=cfg.key, request=req.id)
        w = asyncio.create_task(writer())
        try:
            report = await self._runner(cfg.source).jobs.backfill(
                cfg, since=req.since, limit=req.limit, alert=req.alert, progress=on_progress)
        except SessionDead as exc:
            await backfill_queue.finish(engine, req.id, "failed", error=LOGIN_HINT)
            await self._session_died(str(exc))
            return
        except asyncio.CancelledError:
            # Stopping: back in the queue; the next start resumes it where its pages stopped.
            with contextlib.suppress(Exception):
                await asyncio.shield(backfill_queue.finish(engine, req.id, "queued"))
            raise
        except Exception as exc:
            unreachable = source_unreachable(exc)
            if unreachable is not None:
                # Its pages so far are stored: back in the queue, it continues where it stopped.
                await backfill_queue.finish(engine, req.id, "queued")
                await self._telegram_unreachable(unreachable)
                return
            await backfill_queue.finish(engine, req.id, "failed", error=f"{type(exc).__name__}: {exc}")
            event(log, logging.ERROR, "backfill failed", channel=cfg.key, error=str(exc))
            return
        finally:
            w.cancel()
        stored = max(int(progress["stored"] or 0), report.new)
        if report.error:
            await backfill_queue.finish(engine, req.id, "failed", stored=stored, error=report.error)
        else:
            await backfill_queue.finish(engine, req.id, "done", stored=stored)
        self.metrics.observe_poll(cfg.source, new=report.new, edited=report.edited, alerts=report.alerts,
                                  requests=report.requests, error=bool(report.error),
                                  deferred=report.deferred_until is not None)
        event(log, logging.INFO, "backfill finished", channel=cfg.key, request=req.id, new=report.new,
              error=report.error or "")
        if report.alerts:
            self._wake("drain")

    async def _health_job(self) -> None:
        with self._track():
            if self.stopping or self.rt is None:
                return
            try:
                opened = await health.check_incidents(self.rt.engine, self.settings)
                if opened:
                    self._wake("drain")
                g = await health.database_gauges(self.rt.engine)
                self.metrics.set_database(**g)
            except Exception as exc:
                event(log, logging.WARNING, "health check failed", error=str(exc))
            self._update_status(force=True)

    async def _housekeeping_job(self) -> None:
        with self._track():
            if self.stopping or self.rt is None:
                return
            rt = self.rt
            try:
                pruned = await rt.store.prune_runs(now() - RUNS_KEPT)
                if self.leases is not None:
                    await self.leases.prune_nodes()
                if is_sqlite(rt.engine):
                    async with rt.engine.begin() as conn:
                        await conn.execute(text("PRAGMA optimize"))
                event(log, logging.INFO, "housekeeping", fetch_runs_pruned=pruned)
            except Exception as exc:
                event(log, logging.WARNING, "housekeeping failed", error=str(exc))

    async def _heartbeat_job(self) -> None:
        if self.stopping or self.rt is None:
            return
        try:
            async with self.rt.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            event(log, logging.WARNING, "database heartbeat failed", error=str(exc))
            return
        self._progress()

    async def _watchdog_loop(self) -> None:
        """WATCHDOG=1 at half systemd's timeout, but only while jobs keep finishing: a wedged database
        or event loop stops the pings and systemd restarts the service."""
        wd = self.notifier.watchdog_seconds
        if not wd:
            return
        while True:
            if time.monotonic() - self.last_progress < wd:
                self.notifier.watchdog()
            await asyncio.sleep(wd / 2)

    def _update_status(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._status_at < 5:
            return
        self._status_at = t
        held = len(self.leases.held) if self.leases else 0
        parts = [f"polling {held} of {len(self.channels)} channels"]
        if self.last_poll:
            key, when, res = self.last_poll
            parts.append(f"last poll {key} {when:%H:%M:%S} {res}")
        if self.dead_sources:
            parts.append("Telegram session dead")
        elif self.tg.down:
            parts.append(f"cannot reach Telegram, next try in {round(self.tg.waiting())} s")
        self.notifier.status("; ".join(parts))

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            event(log, logging.WARNING, msg)

    # ------------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Re-read the configuration and apply channel, watchlist and destination changes; work in flight
        finishes with the old settings. An invalid file is reported and the running settings kept."""
        if self.rt is None or self.config_path is None:
            return False
        rt = self.rt
        old = self.settings
        self.notifier.status("reloading the configuration")
        try:
            new = await asyncio.to_thread(load_settings, self.config_path)
        except ConfigError as exc:
            for line in exc.problems:
                event(log, logging.ERROR, "reload refused: the configuration is invalid", problem=line)
            self.notifier.status("reload refused: the configuration is invalid (old one kept)")
            return False
        for secret in (new.telegram.api_hash, new.telegram.session, new.telegram.proxy, new.web.proxy,
                       *(a.url for a in new.alerts)):
            register_secret(secret)
        if new.database != old.database:
            event(log, logging.WARNING, "database.url changes need a restart; the old database stays in use")
            new = dataclasses.replace(new, database=old.database)
        if new.telegram != old.telegram:
            event(log, logging.WARNING, "[telegram] changes need a restart")
        if new.metrics != old.metrics:
            event(log, logging.WARNING, "[metrics] changes need a restart")
        if new.logging != old.logging:
            setup_logging(new.logging.level, new.logging.format)
        try:
            watchlist = await asyncio.to_thread(compile_watchlist, new)
            await rt.store.sync_entities(new.entities)
        except Exception as exc:
            event(log, logging.ERROR, "reload refused: the watchlist cannot be used", error=str(exc))
            return False
        # Polls already running keep the objects they hold; the next ones see the new settings.
        rt.settings = new
        rt.watchlist = watchlist
        rt.ingestor = Ingestor(rt.store, watchlist, planner=make_planner(new),
                               match_link_previews=new.matching.match_link_previews)
        self.settings = new
        # Web jobs are cheap to rebuild (their settings may have changed); the Telethon client is kept (a
        # second client on one session must never run beside the first).
        web = self.runners.pop("web", None)
        if web is not None:
            self._spawn(self._close_runner(web), "close-web")
        old_channels = dict(self.channels)
        await self._register_channels(new)
        for key, c in old_channels.items():
            now_c = self.channels.get(key)
            if now_c is None:
                self._remove_job(f"poll:{key}")
            elif now_c != c and self.scheduler is not None and self.scheduler.get_job(f"poll:{key}") is not None:
                iv = new.channel_interval(now_c)
                self.scheduler.reschedule_job(f"poll:{key}", trigger=IntervalTrigger(
                    seconds=iv, jitter=new.schedule.jitter * iv or None, timezone="UTC"))
        assert self.leases is not None
        self.leases.ttl = float(new.schedule.lease_seconds)
        change = await self.leases.rebalance(self.row_ids.values(), self.polling)
        # Channels new to this process poll at once, like at start.
        self._apply_leases(change.gained, change.lost, first=True)
        self._schedule_rereads()
        event(log, logging.INFO, "configuration reloaded", channels=len(self.channels),
              entities=len(new.entities), destinations=len(new.alerts))
        self._update_status(force=True)
        return True

    # ------------------------------------------------------------------ stop

    async def _close_runner(self, runner: _SourceRunner, wait_idle: float = STOP_GRACE) -> None:
        for _ in range(int(wait_idle * 10)):
            if runner.idle:
                break
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(runner.jobs.aclose(), CLOSE_TIMEOUT)
        except (TimeoutError, Exception) as exc:
            event(log, logging.WARNING, "source did not close cleanly", source=runner.source, error=str(exc))

    async def _close_runners(self) -> None:
        runners, self.runners = list(self.runners.values()), {}
        for r in runners:
            r.cancel()
        await asyncio.gather(*(self._close_runner(r, 0.5) for r in runners), return_exceptions=True)

    async def _shutdown(self) -> None:
        self.stopping = True
        self.notifier.stopping("stopping: finishing the work in flight")
        t0 = time.monotonic()
        if self.scheduler is not None:
            self.scheduler.pause()  # no new job runs; the running ones finish below
        work = {t for t in self.inflight if not t.done()} | {t for t in self.background if not t.done()}
        if work:
            _done, late = await asyncio.wait(work, timeout=STOP_GRACE)
            for t in late:
                t.cancel()  # an unfinished page's transaction rolls back whole
            if late:
                event(log, logging.WARNING, "work cut short at stop", tasks=len(late))
                await asyncio.wait(late, timeout=1.0)
        for r in self.runners.values():
            r.cancel()
        if self.backfill_running is not None and self.rt is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backfill_queue.finish(self.rt.engine, self.backfill_running, "queued"), 1.0)
        if self.leases is not None:
            try:
                await asyncio.wait_for(self.leases.release_all(), 1.5)
            except (TimeoutError, Exception) as exc:
                event(log, logging.WARNING, "leases not released (they expire by themselves)", error=str(exc))
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        await self._close_runners()  # disconnects Telegram
        event(log, logging.INFO, "stopped", seconds=round(time.monotonic() - t0, 1))
