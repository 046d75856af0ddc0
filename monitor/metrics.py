"""Prometheus metrics on ``[metrics] listen`` (e.g. ``127.0.0.1:9108``), off unless set.

Counters move as the service works (polls, new posts, requests, flood waits, alerts queued); gauges that
describe the database (posts stored, matches, outbox by status, flood waits recorded) are refreshed from
it by the service's health job, so they are right across restarts and across several processes. The HTTP
endpoint is prometheus-client's own server on a daemon thread: scrapes never touch the event loop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from monitor.logs import event

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"`` → ("127.0.0.1", 9108); ``"[::1]:9108"`` → ("::1", 9108)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Metrics:
    """The service's metrics in a registry of their own (tests can build several)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.polls = Counter("tgmonitor_polls", "Channel polls finished", ["source", "result"], registry=r)
        self.new_posts = Counter("tgmonitor_posts_new", "New posts stored by polls and backfills", ["source"],
                                 registry=r)
        self.edited_posts = Counter("tgmonitor_posts_edited", "Edited posts stored as new versions", ["source"],
                                    registry=r)
        self.alerts_queued = Counter("tgmonitor_alerts_queued", "Alerts put in the outbox by polls", ["source"],
                                     registry=r)
        self.requests = Counter("tgmonitor_requests", "Requests made to Telegram or the web preview", ["source"],
                                registry=r)
        self.deferred = Counter("tgmonitor_deferred_polls", "Polls deferred by a flood wait or rate limit",
                                ["source"], registry=r)
        self.budget_used = Gauge("tgmonitor_request_budget_used", "Requests taken from the request budget "
                                 "since start", ["source"], registry=r)
        self.budget_wait = Gauge("tgmonitor_request_budget_wait_seconds", "Seconds until the request budget "
                                 "allows the next request", ["source"], registry=r)
        self.posts_stored = Gauge("tgmonitor_posts_stored", "Posts in the database", registry=r)
        self.matches = Gauge("tgmonitor_matches", "Entity matches in the database", registry=r)
        self.alerts = Gauge("tgmonitor_alerts", "Outbox rows by status (sent, failed, pending, silent)",
                            ["status"], registry=r)
        self.flood_waits = Gauge("tgmonitor_flood_waits", "Flood waits Telegram has returned (recorded)",
                                 registry=r)
        self.channels = Gauge("tgmonitor_channels", "Channels by status", ["status"], registry=r)
        self.leased = Gauge("tgmonitor_channels_leased", "Channels this process holds the lease of", registry=r)
        self.last_progress = Gauge("tgmonitor_last_progress_timestamp_seconds",
                                   "When a scheduled job last finished", registry=r)
        # push updates (issue 12)
        self.push_updates = Counter("tgmonitor_push_updates", "Channel updates Telegram pushed (new and edited "
                                    "messages)", registry=r)
        self.push_posts = Counter("tgmonitor_push_posts", "New posts stored from push updates", registry=r)
        self.push_missed = Counter("tgmonitor_push_missed_posts", "Posts of push-covered channels that polling "
                                   "had to catch because push missed them", ["channel"], registry=r)
        self.push_gaps = Counter("tgmonitor_push_gaps", "Pushed posts above a missing id (a poll closed the gap)",
                                 registry=r)
        self.push_state_lost = Counter("tgmonitor_push_state_lost", "Times Telegram reported the update state "
                                       "lost (updatesTooLong)", registry=r)
        self.push_channels = Gauge("tgmonitor_push_channels", "Telethon channels by how they are followed: push "
                                   "(reconciled), fallback (push silent: polled at the interval), poll "
                                   "(not joined)", ["mode"], registry=r)
        self.alert_latency = Gauge("tgmonitor_alert_latency_seconds", "Post date → alert sent over the last "
                                   "24 h, per channel", ["channel", "quantile"], registry=r)
        self._push_seen: dict[str, float] = {}
        self._server: Any = None

    def serve(self, listen: str | None) -> bool:
        """Start the endpoint when ``listen`` is set; a port in use is logged, not fatal."""
        if not listen:
            return False
        host, port = parse_listen(listen)
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            event(log, logging.ERROR, "metrics endpoint not started", listen=listen, error=exc.strerror or str(exc))
            return False
        event(log, logging.INFO, "metrics endpoint", listen=listen)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe_poll(self, source: str, *, new: int, edited: int, alerts: int, requests: int, error: bool,
                     deferred: bool) -> None:
        """Count one finished poll (or backfill step)."""
        self.polls.labels(source, "error" if error else "ok").inc()
        self.new_posts.labels(source).inc(new)
        self.edited_posts.labels(source).inc(edited)
        self.alerts_queued.labels(source).inc(alerts)
        self.requests.labels(source).inc(requests)
        if deferred:
            self.deferred.labels(source).inc()

    def observe_push(self, *, updates: int, posts: int, gaps: int, state_lost: int, missed: Mapping[str, int],
                     modes: Mapping[str, int]) -> None:
        """The push receiver's running totals since start: counters move by what changed since last time."""
        def bump(name: str, total: float, counter: Any) -> None:
            delta = total - self._push_seen.get(name, 0.0)
            if delta > 0:
                counter.inc(delta)
            self._push_seen[name] = total

        bump("updates", updates, self.push_updates)
        bump("posts", posts, self.push_posts)
        bump("gaps", gaps, self.push_gaps)
        bump("lost", state_lost, self.push_state_lost)
        for channel, n in missed.items():
            bump(f"missed:{channel}", n, self.push_missed.labels(channel))
        for mode in ("push", "fallback", "poll", *modes):
            self.push_channels.labels(mode).set(modes.get(mode, 0))

    def set_latency(self, per_channel: Mapping[str, tuple[float, float]]) -> None:
        """Per channel (p50, p95) seconds of post date → alert sent over the last 24 h."""
        self.alert_latency.clear()
        for channel, (p50, p95) in per_channel.items():
            self.alert_latency.labels(channel, "0.5").set(p50)
            self.alert_latency.labels(channel, "0.95").set(p95)

    def set_database(self, *, posts: int, matches: int, alerts: Mapping[str, int], flood_waits: int,
                     channels: Mapping[str, int]) -> None:
        """Gauges read from the database by the health job."""
        self.posts_stored.set(posts)
        self.matches.set(matches)
        for status in ("pending", "sent", "failed", "silent", *alerts):
            self.alerts.labels(status).set(alerts.get(status, 0))
        self.flood_waits.set(flood_waits)
        for status in ("active", "unavailable", *channels):
            self.channels.labels(status).set(channels.get(status, 0))
