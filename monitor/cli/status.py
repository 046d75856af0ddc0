"""``tgmonitor status``: per channel last poll, posts, cursor, lag, alert latency (post → alert sent, median and
95th percentile over 24 h), posts push updates missed, last error, status; outbox counts."""

from __future__ import annotations

import json
from typing import Any

import click

from monitor.cli.app import CliState, main, pass_state, run


async def collect_status(state_settings: Any) -> dict[str, Any]:
    """The snapshot plus whether a service holds the session lock (read-only: no migration, no write)."""
    from monitor.health import service_health, status_snapshot
    from monitor.lock import holder, lock_path
    from monitor.runtime import open_reader

    pid = holder(lock_path(state_settings))
    async with open_reader(state_settings) as engine:
        snap = await status_snapshot(engine, state_settings)
        await _configured_sources(engine, state_settings, snap)
        await _arrivals(engine, snap)
        # ok, or degraded with the reason (its database writes failing), for the running service
        health = await service_health(engine, state_settings, pid)
    snap["service"] = {"running": pid is not None, "pid": pid or None, **health}
    return snap


async def _configured_sources(engine: Any, settings: Any, snap: dict[str, Any]) -> None:
    """A configured channel's SOURCE is the one in the config.

    The stored row keeps whatever created it (``import`` creates rows as "telethon") until the channel
    is polled; the config says how it will be read, so show that."""
    from sqlalchemy import select

    from monitor import models as m
    from monitor.db import sessionmaker
    from monitor.health import channel_subject

    async with sessionmaker(engine)() as s:
        rows = (await s.execute(select(m.Channel.username, m.Channel.tg_id))).all()
    source: dict[str, str] = {}
    for username, tg_id in rows:
        cfg = next((c for c in settings.channels
                    if (c.id is not None and tg_id == c.id) or (c.username is not None and username == c.username)),
                   None)
        if cfg is not None:
            source[channel_subject(username, tg_id)] = cfg.source
    for c in snap["channels"]:
        if c["configured"] and c["channel"] in source:
            c["source"] = source[c["channel"]]


async def _arrivals(engine: Any, snap: dict[str, Any]) -> None:
    """Per channel: post date → alert sent over the last 24 h (median, 95th percentile, alerts counted), how
    its posts first arrived (push, poll, backfill, import, web) and how many polling caught because push
    updates missed them (issue 12)."""
    from monitor import arrivals

    latency = await arrivals.alert_latency(engine)
    counts = await arrivals.arrival_counts(engine)
    for c in snap["channels"]:
        lat = latency.get(c["channel"])
        got = counts.get(c["channel"], {})
        c["latency"] = None if lat is None else {
            "alerts_24h": lat.alerts, "p50_seconds": round(lat.p50, 1), "p95_seconds": round(lat.p95, 1),
            "seen_to_sent_p50_seconds": None if lat.seen_p50 is None else round(lat.seen_p50, 1)}
        c["arrivals"] = {k: got[k] for k in arrivals.ARRIVALS if k in got}
        c["push_missed"] = got.get("push_missed", 0)
    snap["push_missed"] = sum(c["push_missed"] for c in snap["channels"])


def _secs(v: float | None) -> str:
    """A delay for the table: 0.8s, 12s, 4m, 2h."""
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.1f}s"
    return _ago(round(v))


def _ago(seconds: int | None) -> str:
    from monitor.health import age_label

    return "-" if seconds is None else age_label(seconds)


def render_table(snap: dict[str, Any]) -> str:
    """The human form: a channel table, then outbox, incidents and services."""
    svc = snap["service"]
    lines = [f"service: {'running (pid ' + str(svc['pid']) + ')' if svc['running'] else 'not running here'}"
             + (f" — DEGRADED: {svc.get('reason')}" + (f" (since {svc['since'][:19]})" if svc.get("since") else "")
                if svc.get("state") == "degraded" else "")]
    leases = any(c.get("lease_owner") for c in snap["channels"])  # several processes share the channels
    accounts = any(c.get("account") for c in snap["channels"])  # several Telegram accounts share them
    head = ("CHANNEL", "SOURCE", "STATUS", "LAST POLL", "LAG", "POSTS", "CURSOR", "P50", "P95", "MISSED",
            *(("ACCOUNT",) if accounts else ()), *(("LEASE",) if leases else ()), "LAST ERROR")
    rows = [head]
    for c in snap["channels"]:
        err = " ".join((c["last_error"] or "").split())
        rows.append((c["channel"] + ("" if c["configured"] else " (not configured)"), c["source"], c["status"],
                     (c["last_poll"] or "never")[:19].replace("T", " "), _ago(c["lag_seconds"]), str(c["posts"]),
                     str(c["cursor"]), _secs((c.get("latency") or {}).get("p50_seconds")),
                     _secs((c.get("latency") or {}).get("p95_seconds")), str(c.get("push_missed", 0)),
                     *((c.get("account") or "-",) if accounts else ()),
                     *((c.get("lease_owner") or "-",) if leases else ()),
                     err[:60] + ("…" if len(err) > 60 else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    ob = snap["outbox"]
    lines.append("")
    lines.append("outbox: " + ", ".join(f"{k} {v}" for k, v in ob.items()))
    if snap["backfills_queued"]:
        lines.append(f"backfills queued or running: {snap['backfills_queued']}")
    if snap["services"]:
        lines.append("services: " + ", ".join(f"{n['owner']} (pid {n['pid']})" for n in snap["services"]))
    for i in snap["incidents"]:
        lines.append(f"incident: {i['kind']} {i['subject']} since {i['opened_at'][:19]}: {i['detail'] or ''}")
    return "\n".join(lines)


@main.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Human table or one JSON document.")
@pass_state
def status_cmd(state: CliState, fmt: str) -> None:
    """Show each channel's last poll, posts stored, cursor, lag, alert latency, last error and status, and the
    outbox.

    LAG is the time since the channel's last poll. P50 and P95 are the median and 95th percentile of post
    date → alert sent over the last 24 hours; MISSED counts the posts polling had to catch because push
    updates missed them. Works while the service runs (it only reads).

    \b
    Examples:
      tgmonitor status
      tgmonitor --config /etc/tgmonitor/tgmonitor.toml status --format json | jq '.outbox'
    """
    s = state.settings()
    snap = run(collect_status(s), prefix="status: ")  # an unreachable or never-migrated database: one line
    if fmt == "json":
        click.echo(json.dumps(snap, ensure_ascii=False, indent=2))
    else:
        click.echo(render_table(snap))
