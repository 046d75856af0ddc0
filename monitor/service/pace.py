"""How often each channel is polled now (issue 12): a Telethon channel that push updates cover only every
``[schedule] reconcile_interval`` (:class:`~monitor.service.push.PushKeeper`); a web channel at its adaptive
interval (:class:`~monitor.jobs.web.WebPace`: busy channels more often, down to ``[sources.web] min_interval``,
within ``[sources.web] requests_per_minute``); any other at its configured interval. The poller asks here."""

from __future__ import annotations

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

    def interval(self, key: str) -> float | None:
        cfg = self.book.channels.get(key)
        if cfg is None:
            return None
        if cfg.source == "telethon":
            return self.pusher.interval(key)
        if cfg.source == "web":
            runner = self.runners.by_source.get("web")
            pace = getattr(runner.jobs, "pace", None) if runner is not None else None
            if pace is None:
                return None
            s = self.ctx.settings
            held = self.book.leases.held if self.book.leases is not None else set()
            chans = {k: c for k, c in self.book.channels.items()
                     if c.source == "web" and self.book.row_ids.get(k) in held}
            if key not in chans:
                return None
            return pace.intervals(chans, s.schedule.interval, s.web.min_interval,
                                  s.web.requests_per_minute).get(key)
        return None
