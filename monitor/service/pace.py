"""How often each channel is polled now (issue 12): a Telethon channel that push updates cover only every
``[schedule] reconcile_interval`` (:class:`~monitor.service.push.PushKeeper`); a web channel at its adaptive
interval (:class:`~monitor.jobs.web.WebPace`: busy channels more often, down to ``[sources.web] min_interval``,
within ``[sources.web] requests_per_minute``); any other at its configured interval. The poller asks here."""

from __future__ import annotations

import time

from monitor.service.channels import ChannelBook
from monitor.service.context import ServiceContext
from monitor.service.push import PushKeeper
from monitor.service.runners import Runners


class Pace:
    """The poller's ``interval_hook``: a channel's interval now, or None for its configured one."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners, pusher: PushKeeper) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.pusher = pusher
        self._web: tuple[float, object, dict[str, float]] = (-1.0, None, {})  # (when, rates version, plan)

    def _web_plan(self) -> dict[str, float]:
        """The web channels' intervals, computed again when a rate changed or after a second (held channels
        and settings move rarely): the poller asks for every channel several times a cycle, and the plan
        looks at all of them."""
        runner = self.runners.by_source.get("web")
        pace = getattr(runner.jobs, "pace", None) if runner is not None else None
        version = (id(pace), getattr(pace, "version", None))
        at, seen, plan = self._web
        if seen == version and time.monotonic() - at < 1.0:
            return plan
        plan = {}
        if pace is not None:
            s = self.ctx.settings
            held = self.book.leases.held if self.book.leases is not None else set()
            chans = {k: c for k, c in self.book.channels.items()
                     if c.source == "web" and self.book.row_ids.get(k) in held}
            plan = pace.intervals(chans, s.schedule.interval, s.web.min_interval, s.web.requests_per_minute)
        self._web = (time.monotonic(), version, plan)
        return plan

    def interval(self, key: str) -> float | None:
        cfg = self.book.channels.get(key)
        if cfg is None:
            return None
        if cfg.source == "telethon":
            return self.pusher.interval(key)
        if cfg.source == "web":
            return self._web_plan().get(key)
        return None
