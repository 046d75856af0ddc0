"""Telegram's connection as the service sees it: the unreachable-backoff (30 s … 10 min with jitter; the
Telethon polls wait, everything else goes on; a long outage becomes one operator incident), the session check
at start, and a session that dies while running (the Telethon jobs stop, the operator is told once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

from monitor import health
from monitor.jobs.base import SessionDead, source_unreachable
from monitor.logs import event
from monitor.models import now
from monitor.runtime import Runtime
from monitor.service.channels import ChannelBook
from monitor.service.context import (
    CLOSE_TIMEOUT,
    DRAIN_JOB,
    LOGIN_HINT,
    ServiceContext,
    log,
    poll_cycle_job_id,
    reread_job_id,
)
from monitor.service.runners import Runners

#: Telegram unreachable: the Telethon jobs retry the connection after 30 s, 60 s, 120 s … at most 10 min.
TG_RETRY_FIRST = 30.0
TG_RETRY_MAX = 600.0
#: An outage this long becomes an operator incident (short blips, common where Telegram is throttled, do not).
TG_INCIDENT_AFTER = 900.0
TELEGRAM_UNREACHABLE = health.TELEGRAM_UNREACHABLE


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


class SetupError(Exception):
    """The configuration cannot work (e.g. a client factory that fails): exit 2, do not restart."""


class TelegramLink:
    """The Telethon source's connection state: backoff while Telegram cannot be reached, a dead session."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.tg = RetryBackoff()  # Telegram's connection: backoff while it cannot be reached
        self.incident = False
        self.dead_sources: set[str] = set()

    def waiting(self, source: str) -> bool:
        """True while ``source``'s polls must wait for the next connection attempt."""
        return source == "telethon" and self.tg.waiting() > 0

    def postpone(self) -> None:
        """Move the Telethon poll cycle to the next connection attempt (plus a little spread); its channels
        stay due and go in that cycle, together."""
        sched = self.ctx.scheduler
        if sched is None or self.ctx.stopping:
            return
        job = sched.get_job(poll_cycle_job_id("telethon"))
        if job is None:
            return
        until = now() + timedelta(seconds=self.tg.waiting() + random.uniform(0, 2))
        if job.next_run_time is None or job.next_run_time < until:
            job.modify(next_run_time=until)

    async def absorb(self, exc: BaseException) -> bool:
        """Handle a Telegram job's failure that concerns the whole account: a dead session stops the Telethon
        source, an unreachable Telegram postpones it (the work stays due). True when ``exc`` was one of those."""
        if isinstance(exc, SessionDead):
            await self.session_died(str(exc))
            return True
        unreachable = source_unreachable(exc)
        if unreachable is not None:
            await self.unreachable(unreachable)
            return True
        return False

    async def unreachable(self, message: str) -> None:
        """Telegram cannot be reached: the Telethon jobs wait for the next attempt (exponential backoff with
        jitter, 30 s … 10 min); the other sources, delivery and everything else go on. An outage that lasts
        ``TG_INCIDENT_AFTER`` becomes one operator incident, closed when the connection is back."""
        wait = self.tg.failed(message)
        if wait is None:
            return  # the same attempt, reported by another channel of its batch
        event(log, logging.WARNING, message, attempt=self.tg.failures, retry_in=round(wait),
              down_for=round(self.tg.down_for()))
        self.postpone()
        self.ctx.notifier.status(f"cannot reach Telegram (retrying in {round(wait)} s); other sources go on")
        rt = self.ctx.rt
        if not self.incident and self.tg.down_for() >= TG_INCIDENT_AFTER and rt is not None:
            detail = f"{message} (for {round(self.tg.down_for() / 60)} min; retried with backoff)"
            try:
                await health.open_incident(rt.engine, self.ctx.settings, TELEGRAM_UNREACHABLE, "telegram", detail)
                self.incident = True
            except Exception as exc:
                event(log, logging.WARNING, "could not record the incident", error=str(exc))
            self.ctx.wake(DRAIN_JOB)

    async def back(self) -> None:
        """A Telethon poll got through again: report it, close the incident, resume the normal rhythm."""
        took = self.tg.recovered()
        if took is None:
            return
        event(log, logging.INFO, "Telegram reachable again", down_for=round(took))
        if self.ctx.rt is not None:  # also one left open by a process that stopped during an outage
            try:
                await health.close_incidents(self.ctx.rt.engine, TELEGRAM_UNREACHABLE)
                self.incident = False
            except Exception as exc:
                event(log, logging.WARNING, "could not close the incident", error=str(exc))
        self.ctx.update_status(force=True)

    async def session_died(self, reason: str) -> None:
        """The Telegram session stopped working: stop the Telethon jobs, tell the operator once, go on."""
        if "telethon" in self.dead_sources:
            return
        self.dead_sources.add("telethon")
        event(log, logging.ERROR, LOGIN_HINT, reason=reason)
        self.ctx.remove_job(poll_cycle_job_id("telethon"))
        self.ctx.remove_job(reread_job_id("telethon"))
        runner = self.runners.pop("telethon")
        if runner is not None:
            runner.cancel()
            self.ctx.spawn(self.runners.close(runner), "close-telethon")
        if self.ctx.rt is not None:
            try:
                await health.open_incident(self.ctx.rt.engine, self.ctx.settings, health.SESSION_DEAD, "telegram",
                                           reason)
            except Exception as exc:
                event(log, logging.WARNING, "could not record the incident", error=str(exc))
            self.ctx.wake(DRAIN_JOB)
        self.ctx.notifier.status("Telegram session dead: run tgmonitor login; other sources go on")

    async def session_authorised(self, rt: Runtime) -> bool | None:
        """Ask Telegram (``is_user_authorized()`` on a client from the configured factory) whether the session
        is logged in; None when Telegram cannot be reached (then the backoff starts). The client is
        disconnected again before the Telethon jobs open their own: two clients must never use one session at
        the same time. With ``[[telegram.accounts]]`` every account is asked; True when one is logged in."""
        if rt.settings.telegram.accounts:
            from monitor.jobs.accounts import check_sessions

            return await check_sessions(rt, on_unreachable=self.unreachable)
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
            raise SetupError(str(exc)) from None
        try:
            if not client.is_connected():
                await client.connect()
            return bool(await client.is_user_authorized())
        except NETWORK_ERRORS as exc:
            await self.unreachable(str(TelegramUnreachable(network_reason(exc))))
            return None
        except Exception as exc:
            if is_session_dead(exc):
                return False
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), CLOSE_TIMEOUT)
