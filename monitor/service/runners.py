"""The per-source runners: one source's jobs object, polled one batch at a time. A poll cycle hands the source
every channel due in it as one batch, so that a Telethon poll of many joined channels costs one
``GetPeerDialogs`` call per 100 channels, not one per channel. :class:`Runners` creates them on first use and
closes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from monitor.config import ChannelConfig
from monitor.jobs import source_jobs
from monitor.jobs.base import PollReport, SourceJobs
from monitor.logs import event
from monitor.service.context import CLOSE_TIMEOUT, STOP_GRACE, ServiceContext, log


class SourceRunner:
    """One source's jobs object; its batches run one at a time; tracks the batch in flight."""

    def __init__(self, source: str, jobs: SourceJobs) -> None:
        self.source = source
        self.jobs = jobs
        self.busy = 0
        self.task: asyncio.Task[object] | None = None  # the task running the batch in flight
        self._one_at_a_time = asyncio.Lock()

    async def poll(self, channels: Sequence[ChannelConfig]) -> list[PollReport | None]:
        """Poll ``channels`` in one call of the source's jobs; their reports in the order of ``channels`` (None
        where the source said nothing). A second batch waits for the first: two batches at once would split
        the dialog requests again and race for the same budget."""
        async with self._one_at_a_time:
            self.busy += 1
            self.task = asyncio.current_task()
            try:
                reports = await self.jobs.poll(list(channels))
            finally:
                self.busy -= 1
                self.task = None
        return match_reports(channels, reports)

    @property
    def idle(self) -> bool:
        """No batch running."""
        return self.busy == 0

    def cancel(self) -> None:
        """Cancel the batch in flight (its page's transaction rolls back whole; the cursor makes the next
        poll continue from there)."""
        task = self.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()


def match_reports(channels: Sequence[ChannelConfig], reports: Sequence[PollReport]) -> list[PollReport | None]:
    """The report of each channel: by its name or id, else by position when the source gave one report each."""
    by_name: dict[str, PollReport] = {}
    for rep in reports:
        by_name[rep.channel.lower().lstrip("@")] = rep
    out: list[PollReport | None] = []
    for i, c in enumerate(channels):
        r: PollReport | None = next((by_name[n] for n in _names(c) if n in by_name), None)
        if r is None and len(reports) == len(channels):
            r = reports[i]
        out.append(r)
    return out


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
        """Cancel every batch in flight (at stop, after the grace period)."""
        for r in self.by_source.values():
            r.cancel()

    async def close_all(self) -> None:
        """Cancel and close every runner."""
        runners, self.by_source = list(self.by_source.values()), {}
        for r in runners:
            r.cancel()
        await asyncio.gather(*(self.close(r, 0.5) for r in runners), return_exceptions=True)
