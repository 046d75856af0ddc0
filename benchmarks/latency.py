"""Post → alert latency with push updates, and with polling only at the default interval (issue 12).

500 joined channels on the in-process fake Telegram (tests/fake_telegram.py: real Telethon code — its connect,
update loop, MessageBox — over a fake network sender), 60 new posts a minute for 5 minutes, every post
mentioning a watched entity, alerts delivered by Apprise to a local HTTP sink (json://127.0.0.1).

* push: the real service (monitor.service, in this process: scheduler, poll cycles, the push receiver and its
  probe, the delivery drain) in real time, with the default settings ([telegram] push = true, [schedule]
  interval 300 s, reconcile_interval 900 s, requests_per_minute 20). Latency is the moment the fake publishes
  a post (and pushes its update) to the moment its alert was sent (``alerts.sent_at``).
* polling only: the real Telethon poll (``TelethonJobs.poll``, one cycle of all 500 channels, as the service's
  cycle does) and the real delivery (``deliver_due``), on a simulated clock: the cycles come every interval
  (300 s + up to 10 % jitter), the posts are published at their simulated times; a cycle's real duration is
  added to its simulated start. Waiting five real minutes per cycle would measure nothing more.

The channels are resolved and baselined in the database beforehand (at the default budget, 500 first
resolutions take 100 minutes: that is a one-off, not latency). ``[delivery] rate_limit_per_minute`` is raised
to 600 for the sink (60 alerts a minute to one destination is above its default of 20).

    uv run python benchmarks/latency.py                 # 5 minutes of push, then the polling simulation
    uv run python benchmarks/latency.py --minutes 1 --drop 0.05   # shorter; 5 % of the updates lost
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import logging
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_telegram import FakeClock, FakeTelegram, fake_client
from service_helpers import InProcService, factory_spec
from sqlalchemy import select

from monitor import models as m
from monitor.arrivals import percentile
from monitor.config import ChannelConfig, Settings, load_settings
from monitor.runtime import open_runtime

CHANNELS = 500
PER_MINUTE = 60
MENTION = re.compile(r"новость (\d+)")


class _Sink(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Sink.received.append(time.time())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_sink() -> tuple[http.server.ThreadingHTTPServer, int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def write_config(tmp: Path, sink_port: int, *, push: bool, budget: int | None = None) -> Settings:
    chans = "".join(f'\n[[channels]]\nusername = "lat_{i:04d}"\n' for i in range(CHANNELS))
    rpm = f"requests_per_minute = {budget}\n" if budget else ""
    cfg = tmp / "tgmonitor.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp}/latency.db"\n\n'
                   f'[telegram]\nclient_factory = "{factory_spec()}"\npush = {"true" if push else "false"}\n\n'
                   f'[schedule]\n{rpm}\n[delivery]\nrate_limit_per_minute = 600\n\n[logging]\nlevel = "warning"\n\n'
                   '[[entities]]\nname = "Росатом"\n\n'
                   f'[[alerts]]\nname = "sink"\nurl = "json://127.0.0.1:{sink_port}/hook"\n{chans}')
    return load_settings(cfg)


def make_server(drop: float) -> FakeTelegram:
    server = FakeTelegram()
    for i in range(CHANNELS):
        server.add(8_000_000 + i, f"lat_{i:04d}").post("старый пост")
    server.drop_rate = drop
    return server


async def seed(settings: Settings, server: FakeTelegram) -> None:
    """The channels as a first poll leaves them: resolved, baseline and cursor at their newest post."""
    async with open_runtime(settings) as rt:
        for ch in server.channels.values():
            row = await rt.store.upsert_channel(username=ch.username, tg_id=ch.id, title=ch.title,
                                                access_hash=ch.access_hash, source="telethon")
            await rt.store.update_channel(row.id, baseline_id=ch.top(), cursor=ch.top(), seen_count=ch.top(),
                                          config_ref=f"@{ch.username}", polls=1)


def schedule(minutes: float, seed_: int) -> list[tuple[float, int]]:
    """(seconds from the start, channel index) of every post: PER_MINUTE a minute, at random moments."""
    rng = random.Random(seed_)
    n = int(PER_MINUTE * minutes)
    return sorted((rng.uniform(0, minutes * 60), rng.randrange(CHANNELS)) for _ in range(n))


async def sent_times(settings: Settings) -> dict[int, datetime]:
    """Post number → when its alert was sent."""
    out: dict[int, datetime] = {}
    async with open_runtime(settings) as rt, rt.store.sessions() as s:
        rows = await s.execute(select(m.Post.text, m.Alert.sent_at).join(m.Alert, m.Alert.post_id == m.Post.id)
                               .where(m.Alert.sent_at.is_not(None)))
        for text, sent in rows:
            hit = MENTION.search(text or "")
            if hit:
                out[int(hit.group(1))] = sent
    return out


def figures(lat: list[float]) -> str:
    if not lat:
        return "no alerts"
    return (f"p50 {percentile(lat, 0.5):.2f} s, p95 {percentile(lat, 0.95):.2f} s, "
            f"p99 {percentile(lat, 0.99):.2f} s, max {max(lat):.2f} s")


def fmt(c: Counter[str]) -> str:
    return ", ".join(f"{k.removesuffix('Request')} {n}" for k, n in sorted(c.items()) if n) or "none"


# --------------------------------------------------------------------------- push, in real time


async def run_push(minutes: float, drop: float) -> dict[str, Any]:
    srv, port = start_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = write_config(Path(tmp), port, push=True)
            server = make_server(drop)
            await seed(settings, server)
            chans = list(server.channels.values())
            plan = schedule(minutes, 1)
            published: dict[int, float] = {}
            async with InProcService(settings, server) as svc:
                assert await svc.wait_cycles("telethon", 1, 120), "the first cycle did not finish"
                pusher = svc.service.pusher

                def probed() -> bool:  # the first probe ran: every joined channel is now reconciled only
                    r = pusher.receiver
                    return r is not None and len(r.watched) == CHANNELS and r.stats.probes > 0

                end = time.monotonic() + 60
                while time.monotonic() < end and not probed():  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                before = Counter(server.counts)
                t0 = time.monotonic()
                for n, (at, idx) in enumerate(plan):
                    await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                    published[n] = time.time()
                    chans[idx].post(f"Росатом: новость {n}", date=datetime.now(UTC))
                await asyncio.sleep(max(0.0, t0 + minutes * 60 - time.monotonic()))
                window = time.monotonic() - t0
                used = Counter(server.counts) - before
                # the alerts still in flight, and (with --drop) the posts push lost, left to the reconciliation
                settle_until = time.monotonic() + (1200 if drop else 30)
                while time.monotonic() < settle_until and len(_Sink.received) < len(plan):  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                r = pusher.receiver
                stats = (r.stats.missed.total(), r.stats.gaps, r.in_fallback()) if r is not None else (0, 0, [])
            sent = await sent_times(settings)
    finally:
        srv.shutdown()
    lat = [(sent[n].timestamp() - published[n]) for n in published if n in sent]
    return {"lat": lat, "posts": len(plan), "alerted": len(sent), "requests": used, "window": window,
            "dropped": len(server.dropped), "missed": stats[0], "gaps": stats[1], "fallback": stats[2]}


# --------------------------------------------------------------------------- polling only, simulated clock


async def run_polling(minutes: float) -> dict[str, Any]:
    from monitor.alerts.deliver import deliver_due
    from monitor.jobs.telethon import TelethonJobs, build_budget

    srv, port = start_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = write_config(Path(tmp), port, push=False, budget=1_000_000)
            server = make_server(0.0)
            await seed(settings, server)
            chans = list(server.channels.values())
            plan = schedule(minutes, 1)
            clock = FakeClock(datetime.now(UTC))
            start = clock.now()
            interval = settings.schedule.interval
            rng = random.Random(2)
            cfgs = [ChannelConfig(username=f"lat_{i:04d}") for i in range(CHANNELS)]
            published: dict[int, datetime] = {}
            sent_sim: dict[int, datetime] = {}
            requests = 0
            async with open_runtime(settings) as rt:
                jobs = TelethonJobs(rt, client=fake_client(server), budget=build_budget(1e9, clock=clock.monotonic),
                                    clock=clock)
                cycle = start + timedelta(seconds=rng.uniform(0, interval))  # the cycles' phase is arbitrary
                nxt = 0
                cycles = 0
                while len(sent_sim) < len(plan):
                    clock.advance((cycle - clock.now()).total_seconds())
                    while nxt < len(plan) and start + timedelta(seconds=plan[nxt][0]) <= cycle:
                        at, idx = plan[nxt]
                        published[nxt] = start + timedelta(seconds=at)
                        chans[idx].post(f"Росатом: новость {nxt}", date=published[nxt])
                        nxt += 1
                    real0 = datetime.now(UTC)
                    before = sum(server.counts.values())
                    await jobs.poll(cfgs)
                    requests += sum(server.counts.values()) - before
                    await deliver_due(rt)
                    async with rt.store.sessions() as s:
                        rows = await s.execute(select(m.Post.text, m.Alert.sent_at)
                                               .join(m.Alert, m.Alert.post_id == m.Post.id)
                                               .where(m.Alert.sent_at >= real0))
                        for text, when in rows:
                            hit = MENTION.search(text or "")
                            if hit:
                                sent_sim[int(hit.group(1))] = cycle + (when - real0)
                    cycles += 1
                    cycle += timedelta(seconds=interval + rng.uniform(0, settings.schedule.jitter * interval))
                await jobs.aclose()
    finally:
        srv.shutdown()
    lat = [(sent_sim[n] - published[n]).total_seconds() for n in published if n in sent_sim]
    period = interval * (1 + settings.schedule.jitter / 2)  # the mean time between two cycles
    return {"lat": lat, "posts": len(plan), "alerted": len(sent_sim), "requests": requests, "cycles": cycles,
            "per_minute": requests / cycles / (period / 60)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="how long posts are published (default 5)")
    ap.add_argument("--drop", type=float, default=0.0, help="share of push updates lost for good (default 0)")
    ap.add_argument("--skip-push", action="store_true")
    ap.add_argument("--skip-polling", action="store_true")
    a = ap.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    print(f"{CHANNELS} joined channels, {PER_MINUTE} posts a minute for {a.minutes:g} min, each alerting once "
          "(Apprise json:// to a local HTTP sink)")
    if not a.skip_push:
        r = await run_push(a.minutes, a.drop)
        rpm = sum(r["requests"].values()) / (r["window"] / 60)
        print(f"push (real time, default settings{f', {a.drop:.0%} of updates lost' if a.drop else ''}): "
              f"{r['alerted']}/{r['posts']} alerted; post → alert {figures(r['lat'])}")
        print(f"  requests {rpm:.1f}/min over {r['window'] / 60:.1f} min ({fmt(r['requests'])}); goal p50 <= 2 s, "
              "p99 <= 10 s, <= 30 requests/min")
        if a.drop:
            print(f"  updates lost {r['dropped']}, caught by reconciliation and counted {r['missed']} "
                  f"(gaps revealed by later pushes {r['gaps']}; channels in fallback at the end: "
                  f"{len(r['fallback'])})")
    if not a.skip_polling:
        r = await run_polling(a.minutes)
        print(f"polling only (interval 300 s, jitter 0.1; simulated clock, real poll and delivery): "
              f"{r['alerted']}/{r['posts']} alerted in {r['cycles']} cycles; post → alert {figures(r['lat'])}")
        print(f"  requests {r['per_minute']:.1f}/min ({r['requests']} in {r['cycles']} cycles, one every 315 s on "
              "average: a GetPeerDialogs per 100 channels plus a GetHistory per channel that moved)")


if __name__ == "__main__":
    asyncio.run(main())
