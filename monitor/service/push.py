"""Push updates in the running service (issue 12): the :class:`~monitor.jobs.push.PushReceiver` on the Telethon
jobs' own client (a second client on one session must never run), its store loop, the probe job, and what the
receiver asks for: a channel's poll interval as push covers it or not, a poll soon, the drain after a pushed
alert, and the operator incident while push is silent somewhere.

With ``[telegram] push = false`` (or no Telethon channel) nothing here runs and polling is as before."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from monitor import arrivals, health
from monitor.config import ChannelConfig
from monitor.jobs.push import PROBE_EVERY, PUSH, PushReceiver
from monitor.logs import event
from monitor.service.channels import ChannelBook
from monitor.service.context import DRAIN_JOB, ServiceContext, log
from monitor.service.polling import Poller
from monitor.service.runners import Runners
from monitor.service.telegram import TelegramLink

PROBE_JOB = "push-probe"
#: the first probe waits for the first poll cycle to have resolved the channels
PROBE_FIRST = 15.0
#: the latency gauges are read from the database this often
LATENCY_EVERY = 300.0
PUSH_SILENT = health.PUSH_SILENT


class PushKeeper:
    """Runs push updates for the Telethon channels this process holds (see the module docstring)."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners, poller: Poller,
                 link: TelegramLink) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.poller = poller
        self.link = link
        self.receiver: PushReceiver | None = None
        self._latency_at = 0.0

    @property
    def wanted(self) -> bool:
        s = self.ctx.settings
        # several accounts (issue 16): polled only for now (push would need a receiver per account's client)
        return s.telegram.push and not s.telegram.accounts and any(
            c.enabled and c.source == "telethon" for c in s.channels)

    def prepare(self) -> None:
        """Before the first poll connects: the receiver on the Telethon jobs (so their client is built to
        receive updates and catch up), and the poller asking it for each channel's interval."""
        if not self.wanted or self.receiver is not None or "telethon" in self.link.dead_sources:
            return
        jobs = self.runners.get("telethon").jobs
        self.receiver = PushReceiver(jobs, self._held, self)  # type: ignore[arg-type]

    def start(self) -> None:
        """The store loop and the probe job (after the leases are taken)."""
        if self.receiver is None:
            return
        self.ctx.spawn(self._run(), "push")
        self.ctx.add_job(self.probe_job, PROBE_JOB, PROBE_EVERY, first=PROBE_FIRST)
        event(log, logging.INFO, "push updates on: joined channels are reconciled every "
              f"{self.ctx.settings.schedule.reconcile_interval} s")

    def _held(self) -> Mapping[str, ChannelConfig]:
        """The Telethon channels this process polls now."""
        held = self.book.leases.held if self.book.leases is not None else set()
        return {k: c for k, c in self.book.channels.items()
                if c.source == "telethon" and self.book.row_ids.get(k) in held}

    def interval(self, key: str) -> float | None:
        """The reconcile interval while push covers ``key``, else None (its usual interval)."""
        r = self.receiver
        if r is None or "telethon" in self.link.dead_sources:
            return None
        return float(self.ctx.settings.schedule.reconcile_interval) if r.mode(key) == PUSH else None

    # ------------------------------------------------------------------ the loop and the probe

    async def _run(self) -> None:
        r = self.receiver
        assert r is not None
        try:
            await r.run(lambda: self.ctx.stopping or "telethon" in self.link.dead_sources)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never expected (storing errors are logged per update); polling goes on
            event(log, logging.ERROR, "push updates stopped", error=f"{type(exc).__name__}: {exc}")

    async def probe_job(self) -> None:
        """Compare the joined channels with Telegram's dialogs (see PushReceiver.probe); export the counts."""
        ctx, r, link = self.ctx, self.receiver, self.link
        if r is None:
            return
        with ctx.track():
            if ctx.stopping or "telethon" in link.dead_sources or link.waiting("telethon"):
                return
            try:
                n = await r.probe()
                ctx.metrics.requests.labels("telethon").inc(n)
            except Exception as exc:
                if await link.absorb(exc):
                    return
                event(log, logging.WARNING, "push probe failed", error=f"{type(exc).__name__}: {exc}")
            await self._export()

    async def _export(self) -> None:
        r = self.receiver
        if r is None:
            return
        modes: dict[str, int] = {}
        for w in r.watched.values():
            modes[w.mode] = modes.get(w.mode, 0) + 1
        st = r.stats
        self.ctx.metrics.observe_push(updates=st.updates, posts=st.stored, gaps=st.gaps, state_lost=st.state_lost,
                                      missed=st.missed, modes=modes)
        if time.monotonic() - self._latency_at >= LATENCY_EVERY and self.ctx.rt is not None:
            self._latency_at = time.monotonic()
            try:
                lat = await arrivals.alert_latency(self.ctx.rt.engine)
                self.ctx.metrics.set_latency({k: (v.p50, v.p95) for k, v in lat.items()})
            except Exception as exc:
                event(log, logging.DEBUG, "latency gauges not read", error=str(exc))

    # ------------------------------------------------------------------ what the receiver asks for

    def mode_changed(self, key: str, mode: str) -> None:
        """The channel's interval changed: a shorter one (fallback) brings its next poll closer now; a longer
        one (push) applies from its next poll on."""
        self.poller.reschedule(key)

    def poll_soon(self, key: str, delay: float) -> None:
        self.poller.poll_soon(key, delay)

    def alerts_queued(self) -> None:
        self.ctx.wake(DRAIN_JOB)

    async def push_silent(self, keys: Sequence[str], reason: str) -> None:
        """One operator incident while push is silent anywhere (not one per channel: a lost update state
        affects them all), naming the channels."""
        rt = self.ctx.rt
        if rt is None:
            return
        r = self.receiver
        names = r.in_fallback() if r is not None else list(keys)
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        detail = f"{reason}; polled every {self.ctx.settings.schedule.interval} s again: {shown}"
        try:
            if await health.open_incident(rt.engine, self.ctx.settings, PUSH_SILENT, "telegram", detail):
                self.ctx.wake(DRAIN_JOB)
        except Exception as exc:
            event(log, logging.WARNING, "could not record the incident", error=str(exc))

    async def push_healthy(self) -> None:
        rt = self.ctx.rt
        if rt is None:
            return
        try:
            await health.close_incidents(rt.engine, PUSH_SILENT)
        except Exception as exc:
            event(log, logging.WARNING, "could not close the incident", error=str(exc))
