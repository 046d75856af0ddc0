"""Requests per poll cycle and our own CPU time per quiet channel, for 500 Telethon channels of which 10 have
new posts — once with every channel joined, once with none joined.

Drives the real service (monitor.service: its scheduler, the poll cycle of each source, leases, runners, the
Telethon jobs) in this process, over the in-process fake Telegram of tests/fake_telegram.py (real Telethon
code, fake network sender) and a real SQLite file; only the interval is short (5 s, jitter 0.1) so that a
few cycles take seconds. Goals: ≤ 30 requests a cycle joined, ≤ 520 not joined, < 5 ms own CPU per quiet
channel (process CPU from the end of one cycle to the end of the next, minus the fake server's, divided by the
channels: it includes the scheduler and the service's other jobs).

    uv run python benchmarks/polling.py
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_telegram import FakeTelegram
from service_helpers import InProcService, factory_spec

from monitor.config import load_settings

CHANNELS, ACTIVE = 500, 10
INTERVAL = 5


def _requests(server: FakeTelegram) -> Counter[str]:
    return Counter(server.counts)


async def measure(joined: bool, recent: bool = False) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "tgmonitor.toml"
        chans_cfg = "".join(f'\n[[channels]]\nusername = "bench_{i:04d}"\n' for i in range(CHANNELS))
        # the budget is not the subject here (at the default 20 a minute the first cycle's 500 resolutions
        # alone would take 100 minutes): what a cycle asks for is
        cfg.write_text(f'[database]\nurl = "sqlite:///{tmp}/bench.db"\n\n'
                       f'[telegram]\nclient_factory = "{factory_spec()}"\npush = false\n\n'
                       f'[schedule]\ninterval = {INTERVAL}\njitter = 0.1\nrequests_per_minute = 1000000\n\n'
                       f'[logging]\nlevel = "warning"\n\n'
                       '[[entities]]\nname = "Росатом"\naliases = ["Газпром"]\n' + chans_cfg)
        settings = load_settings(cfg)
        server = FakeTelegram()
        chans = [server.add(9_000_000 + i, f"bench_{i:04d}", joined=joined) for i in range(CHANNELS)]
        for ch in chans:
            for k in range(3):
                ch.post(f"старый пост {k}", date=datetime.now(UTC) if recent else None)
        async with InProcService(settings, server) as svc:
            poller = svc.service.poller
            # first cycle: every channel resolved once, baselines set
            assert await svc.wait_cycles("telethon", 1, 600), "the first cycle did not finish"
            done = poller.cycles["telethon"]
            for ch in chans[:ACTIVE]:
                for k in range(5):
                    ch.post(f"новость {k}: Росатом" if k == 0 else f"новость {k}")
            before = _requests(server)
            assert await svc.wait_cycles("telethon", done + 1, 120)
            active = _requests(server) - before
            active_stats = poller.history[-1]
            quiet: list[Counter[str]] = []
            cpu_per_channel: list[float] = []
            spans: list[float] = []
            for _ in range(3):
                before, fake_cpu, cpu, t = _requests(server), server.cpu, time.process_time(), time.monotonic()
                assert await svc.wait_cycles("telethon", poller.cycles["telethon"] + 1, 120)
                quiet.append(_requests(server) - before)
                own = time.process_time() - cpu - (server.cpu - fake_cpu)
                cpu_per_channel.append(own * 1000 / CHANNELS)
                spans.append(time.monotonic() - t)
            cycles = [c for c in poller.history if c.source == "telethon"]
    return {"active": active, "active_channels": active_stats.channels, "active_new": active_stats.new,
            "quiet": quiet, "cpu_ms": min(cpu_per_channel), "cycles": len(cycles),
            "channels_per_cycle": sorted({c.channels for c in cycles[1:]}), "span": sum(spans) / len(spans)}


def _fmt(c: Counter[str]) -> str:
    return ", ".join(f"{n.removesuffix('Request')} {k}" for n, k in sorted(c.items()) if k) or "none"


async def main() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    print(f"{CHANNELS} channels, {ACTIVE} with new posts; the real service's poll loop, interval {INTERVAL} s, "
          "jitter 0.1; posts older than reread_hours (no re-reads due)")
    for joined in (True, False):
        r = await measure(joined)
        goal = 30 if joined else 520
        active: Counter[str] = r["active"]  # type: ignore[assignment]
        quiet: list[Counter[str]] = r["quiet"]  # type: ignore[assignment]
        name = "joined" if joined else "not joined"
        print(f"{name:>10}: cycle with {ACTIVE} active channels: {sum(active.values())} requests "
              f"(goal <= {goal}; {_fmt(active)}), {r['active_new']} new posts stored")
        print(f"{'':>10}  quiet cycles: {[sum(q.values()) for q in quiet]} requests ({_fmt(quiet[-1])}); "
              f"channels per cycle {r['channels_per_cycle']} (one batch each; "
              f"{math.ceil(CHANNELS / 100)} GetPeerDialogs expected when joined); one cycle every "
              f"{r['span']:.1f} s; own CPU {r['cpu_ms']:.2f} ms per quiet channel (goal < 5 ms)")
    r = await measure(True, recent=True)
    quiet = r["quiet"]  # type: ignore[assignment]
    print(f"every channel posted within reread_hours (joined): {sum(r['active'].values())} and "  # type: ignore[attr-defined]
          f"{[sum(q.values()) for q in quiet]} requests in the next cycles: a tenth of the channels "
          "(reread_every = 10, staggered) re-read their window (channels.GetMessages); every tenth re-read also "
          "compares the server count (GetHistory limit 1)")


if __name__ == "__main__":
    asyncio.run(main())
