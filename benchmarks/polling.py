"""Requests per poll cycle and our own CPU time per quiet channel, for 500 Telethon channels of which 10 have
new posts — once with every channel joined, once with none joined.

Runs the real jobs (monitor.jobs.telethon) over the in-process fake Telegram of tests/fake_telegram.py (real
Telethon code, fake network sender) and a real SQLite file. Goals: ≤ 30 requests a cycle joined, ≤ 520 not
joined, < 5 ms own CPU per quiet channel (process CPU of a quiet cycle minus the fake server's, divided by
the channels).

    uv run python benchmarks/polling.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_telegram import FakeClock, FakeTelegram, fake_client

from monitor.config import ChannelConfig, load_settings
from monitor.jobs.telethon import TelethonJobs, build_budget
from monitor.runtime import open_runtime

CHANNELS, ACTIVE = 500, 10


async def measure(joined: bool, recent: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "tgmonitor.toml"
        cfg.write_text(f'[database]\nurl = "sqlite:///{tmp}/bench.db"\n\n[schedule]\nrequests_per_minute = 1000000\n'
                       '\n[[entities]]\nname = "Росатом"\naliases = ["Газпром"]\n')
        settings = load_settings(cfg)
        server = FakeTelegram()
        clock = FakeClock()
        chans = [server.add(9_000_000 + i, f"bench_{i:04d}", joined=joined) for i in range(CHANNELS)]
        for ch in chans:
            for k in range(3):
                ch.post(f"старый пост {k}", date=clock.now() if recent else None)
        configs = [ChannelConfig(username=ch.username) for ch in chans]
        budget = build_budget(1_000_000, clock=clock.monotonic)
        async with open_runtime(settings) as rt:
            async def cycle() -> tuple[int, float, float]:
                jobs = TelethonJobs(rt, client=fake_client(server), budget=budget, clock=clock)
                await jobs._open()  # connecting is not part of a cycle
                before, fake_cpu = sum(server.counts.values()), server.cpu
                cpu = time.process_time()
                await jobs.poll(configs)
                cpu = time.process_time() - cpu - (server.cpu - fake_cpu)
                n = sum(server.counts.values()) - before
                await jobs.aclose()
                return n, cpu, server.cpu - fake_cpu

            await cycle()  # first cycle: resolve every channel once and set the baselines
            for ch in chans[:ACTIVE]:
                for k in range(5):
                    ch.post(f"новость {k}: Росатом" if k == 0 else f"новость {k}")
            clock.advance(300)
            active_requests, _, _ = await cycle()
            clock.advance(300)
            quiet_requests, quiet_cpu, _ = await cycle()
    return {"active": active_requests, "quiet": quiet_requests, "cpu_ms_per_quiet_channel": quiet_cpu * 1000 / CHANNELS}


async def main() -> None:
    print(f"{CHANNELS} channels, {ACTIVE} with new posts; posts older than reread_hours (no re-reads due)")
    for joined in (True, False):
        r = await measure(joined)
        goal = 30 if joined else 520
        print(f"{'joined' if joined else 'not joined':>10}: {r['active']:.0f} requests in a cycle with "
              f"{ACTIVE} active channels (goal <= {goal}), {r['quiet']:.0f} in a quiet cycle; own CPU "
              f"{r['cpu_ms_per_quiet_channel']:.2f} ms per quiet channel (goal < 5 ms)")
    r = await measure(True, recent=True)
    print(f"every channel posted within reread_hours (joined): {r['active']:.0f} and {r['quiet']:.0f} requests "
          "in two cycles: a tenth of the channels (reread_every = 10, staggered) re-read their window "
          "(channels.GetMessages); every tenth re-read also compares the server count (GetHistory limit 1)")


if __name__ == "__main__":
    asyncio.run(main())
