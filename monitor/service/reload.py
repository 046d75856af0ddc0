"""SIGHUP: re-read the configuration and apply channel, watchlist and destination changes while running. Work
in flight finishes with the old settings; a file that no longer validates is reported and the old one kept;
what cannot change without a restart (database, ``[telegram]``, ``[metrics]``) is said so."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from monitor.config import ConfigError, load_settings
from monitor.ingest import Ingestor
from monitor.logs import event, register_secret, setup_logging
from monitor.runtime import compile_watchlist, make_planner
from monitor.service.channels import ChannelBook
from monitor.service.context import ServiceContext, log
from monitor.service.leasing import LeaseKeeper
from monitor.service.polling import Poller
from monitor.service.runners import Runners


class Reloader:
    """Applies a re-read configuration to the running parts."""

    def __init__(self, ctx: ServiceContext, book: ChannelBook, runners: Runners, poller: Poller,
                 leaser: LeaseKeeper) -> None:
        self.ctx = ctx
        self.book = book
        self.runners = runners
        self.poller = poller
        self.leaser = leaser

    async def reload(self) -> bool:
        """Re-read the configuration and apply channel, watchlist and destination changes; work in flight
        finishes with the old settings. An invalid file is reported and the running settings kept."""
        ctx = self.ctx
        if ctx.rt is None or ctx.config_path is None:
            return False
        rt = ctx.rt
        old = ctx.settings
        ctx.notifier.status("reloading the configuration")
        try:
            new = await asyncio.to_thread(load_settings, ctx.config_path)
        except ConfigError as exc:
            for line in exc.problems:
                event(log, logging.ERROR, "reload refused: the configuration is invalid", problem=line)
            ctx.notifier.status("reload refused: the configuration is invalid (old one kept)")
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
        if new.dashboard != old.dashboard:  # the dashboard's address and token are bound at start
            event(log, logging.WARNING, "[web] changes need a restart")
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
        ctx.settings = new
        # Web jobs are cheap to rebuild (their settings may have changed); the Telethon client is kept (a
        # second client on one session must never run beside the first).
        web = self.runners.pop("web")
        if web is not None:
            ctx.spawn(self.runners.close(web), "close-web")
        old_channels = dict(self.book.channels)
        await self.book.register(new)
        for key, c in old_channels.items():
            now_c = self.book.channels.get(key)
            if now_c is None:
                self.poller.unschedule(key)
            elif now_c != c:
                self.poller.reschedule(key)
        assert self.book.leases is not None
        self.book.leases.ttl = float(new.schedule.lease_seconds)
        # Channels new to this process poll at once, like at start.
        await self.leaser.rebalance()
        self.poller.schedule_rereads()
        event(log, logging.INFO, "configuration reloaded", channels=len(self.book.channels),
              entities=len(new.entities), destinations=len(new.alerts))
        ctx.update_status(force=True)
        return True
