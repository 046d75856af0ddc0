"""The per-source runners: one source's jobs object (Telethon or web) plus the batching of polls that fall due
together, so that a Telethon poll of many joined channels costs one ``GetPeerDialogs`` call, not one per
channel. :class:`Runners` creates them on first use and closes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from monitor.config import ChannelConfig
from monitor.jobs import source_jobs
from monitor.jobs.base import PollReport, SourceJobs
from monitor.logs import event
from monitor.service.context import CLOSE_TIMEOUT, STOP_GRACE, ServiceContext, log

BATCH_WINDOW = 0.2  # polls falling due within this window go to the source as one batch


class SourceRunner:
    """One source's jobs object plus the batching of due polls; tracks its work in flight."""

    def __init__(self, source: str, jobs: SourceJobs) -> None:
        self.source = source
        self.jobs = jobs
        self.pending: list[tuple[ChannelConfig, asyncio.Future[PollReport | None]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.busy = 0

    async def poll(self, cfg: ChannelConfig) -> PollReport | None:
        """Poll one channel in the next batch of this source; its report (None when the source said nothing)."""
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
        """Nothing waiting and nothing running."""
        return self.busy == 0 and not self.pending

    def cancel(self) -> None:
        """Drop the polls waiting for the next batch (their callers see CancelledError)."""
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


class Runners:
    """The runners of this process, one per source kind, created on first use."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.by_source: dict[str, SourceRunner] = {}

    def get(self, source: str) -> SourceRunner:
        """The runner of ``source``, created (with its jobs object) if needed."""
        r = self.by_source.get(source)
        if r is None:
            assert self.ctx.rt is not None
            r = self.by_source[source] = SourceRunner(source, source_jobs(self.ctx.rt, source))
        return r

    def pop(self, source: str) -> SourceRunner | None:
        """Take the runner of ``source`` out (the caller closes it)."""
        return self.by_source.pop(source, None)

    def budget_gauges(self, source: str) -> None:
        """Export the request budget of ``source`` (if its jobs have one) to Prometheus."""
        runner = self.by_source.get(source)
        budget = getattr(runner.jobs, "budget", None) if runner else None
        if budget is not None:
            with contextlib.suppress(Exception):
                self.ctx.metrics.budget_used.labels(source).set(float(budget.used))
                self.ctx.metrics.budget_wait.labels(source).set(float(budget.wait_time()))

    async def close(self, runner: SourceRunner, wait_idle: float = STOP_GRACE) -> None:
        """Let ``runner`` finish its work (up to ``wait_idle`` s), then close its jobs (disconnects Telegram)."""
        for _ in range(int(wait_idle * 10)):
            if runner.idle:
                break
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(runner.jobs.aclose(), CLOSE_TIMEOUT)
        except (TimeoutError, Exception) as exc:
            event(log, logging.WARNING, "source did not close cleanly", source=runner.source, error=str(exc))

    def cancel_all(self) -> None:
        """Drop every poll waiting for a batch (at stop)."""
        for r in self.by_source.values():
            r.cancel()

    async def close_all(self) -> None:
        """Cancel and close every runner."""
        runners, self.by_source = list(self.by_source.values()), {}
        for r in runners:
            r.cancel()
        await asyncio.gather(*(self.close(r, 0.5) for r in runners), return_exceptions=True)
