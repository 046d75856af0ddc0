"""Several Telegram accounts (issue 16): 2,000 channels over 5 accounts, each account joined to 400 of them.

Drives the real service (monitor.service: scheduler, poll cycles, leases that follow the accounts' plan, the
AccountPool with one Telethon client per account) in this process over tests/fake_accounts.py (five fake
accounts, each its own fake sender, dialogs and access hashes, over one fake Telegram; real Telethon code) and a
real SQLite file. The database starts as after earlier runs (every channel polled before: cursor and baseline
at its newest post), so that the figures are the steady state, not 2,000 first polls.

Measured:
* requests per cycle with 10 active channels (goal ≤ 5 × 25 = 125, and ≤ 25 per account);
* failover: one account banned between two cycles, 10 of its channels and 10 others post; the time from the ban
  until all 20 posts are stored (it includes waiting for the next cycle, at most one interval of 10 s), the
  cycle that moved the channels, what it cost (the other accounts must resolve the channels they had not
  joined: Telegram gives every account its own access hash), and a cycle after it;
* recovery: the ban lifted; the time until every one of its 400 channels is read by it again.

The budget is not the subject (1,000,000 requests a minute): what a cycle asks for is. With the default 20 a
minute, a failover's resolves go at a quarter of it per account (ResolveUsername is the request Telegram
punishes hardest) and are deferred, not waited for: the figure printed below says how long that takes.

    uv run python benchmarks/accounts.py
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fake_accounts as fa
from service_helpers import InProcService
from sqlalchemy import func, insert, select

import monitor.jobs.accounts as ja
from monitor import models as m
from monitor.config import load_settings
from monitor.jobs.accounts import AccountPool
from monitor.runtime import Runtime, open_runtime

CHANNELS, ACCOUNTS, ACTIVE = 2000, 5, 10
INTERVAL = 10
NAMES = [f"acc{i}" for i in range(ACCOUNTS)]


def counts(world: fa.FakeWorld) -> dict[str, int]:
    return world.requests()


def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a.get(k, 0) for k in b}


async def wait_cycle(svc: InProcService, n: int) -> None:
    assert await svc.wait_cycles("telethon", n, 120), "the service stopped cycling"


async def main() -> None:
    logging.disable(logging.CRITICAL)
    ja.RECHECK_DEAD = 5.0  # a banned account is tried again after 5 s here (10 min in production)
    world = fa.WORLD = fa.FakeWorld()
    for n in NAMES:
        world.account(n)
    chans = [world.add(5_000_000 + i, f"ch_{i:05d}", joined_by=[NAMES[i % ACCOUNTS]]) for i in range(CHANNELS)]
    for ch in chans:
        ch.post("старый пост")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "tgmonitor.toml"
        accs = "".join(f'[[telegram.accounts]]\nname = "{n}"\n' for n in NAMES)
        body = "".join(f'[[channels]]\nusername = "{c.username}"\n' for c in chans)
        cfg.write_text(f'[database]\nurl = "sqlite:///{tmp}/bench.db"\n\n'
                       f'[telegram]\nclient_factory = "{fa.factory_spec()}"\npush = false\n\n'
                       f'[schedule]\ninterval = {INTERVAL}\njitter = 0.1\nrequests_per_minute = 1000000\n\n'
                       f'[logging]\nlevel = "warning"\n\n{accs}\n[[entities]]\nname = "Росатом"\n\n{body}')
        settings = load_settings(cfg)
        async with open_runtime(settings) as rt, rt.store.sessions.begin() as s:
            await s.execute(insert(m.Channel), [
                {"username": c.username, "tg_id": c.id, "title": c.title, "source": "telethon", "status": "active",
                 "cursor": c.top(), "baseline_id": c.top(), "seen_count": c.top(), "polls": 1,
                 "config_ref": f"@{c.username}", "backfill_done": True} for c in chans])
        async with InProcService(settings, None) as svc:
            poller = svc.service.poller
            t0 = time.perf_counter()
            await wait_cycle(svc, 1)
            first = time.perf_counter() - t0
            pool = svc.service.runners.get("telethon").jobs
            assert isinstance(pool, AccountPool)
            print(f"{CHANNELS} channels, {ACCOUNTS} accounts (400 joined each), interval {INTERVAL} s; "
                  f"first cycle (reads every account's dialogs) {first:.1f} s, "
                  f"{sum(counts(world).values())} requests")
            per_cycle = []
            for k in range(3):
                before = counts(world)
                for ch in chans[k::CHANNELS // ACTIVE + 1]:  # 2 per account
                    ch.post("Росатом сообщил")
                done = poller.cycles["telethon"]
                await wait_cycle(svc, done + 1)
                per_cycle.append(diff(before, counts(world)))
            for i, c in enumerate(per_cycle, 1):
                print(f"cycle {i} ({ACTIVE} active): {sum(c.values())} requests (goal <= {ACCOUNTS} x 25 = "
                      f"{ACCOUNTS * 25}); per account {sorted(c.values())} (goal <= 25 each)")
            # -------------------------------------------------------------- failover
            victim = "acc2"
            theirs = [c for i, c in enumerate(chans) if NAMES[i % ACCOUNTS] == victim]
            others = [c for i, c in enumerate(chans) if NAMES[i % ACCOUNTS] != victim]
            done = poller.cycles["telethon"]
            await wait_cycle(svc, done + 1)
            async with rt_of(svc).store.sessions() as s:
                stored0 = (await s.execute(select(func.count()).select_from(m.Post))).scalar_one()
            before = counts(world)
            world.accounts[victim].banned = True
            t_ban = time.perf_counter()
            for ch in theirs[:10] + others[:10]:
                ch.post("Росатом после бана")
            cyc = poller.cycles["telethon"]
            while True:
                async with rt_of(svc).store.sessions() as s:
                    stored = (await s.execute(select(func.count()).select_from(m.Post))).scalar_one()
                if stored >= stored0 + 20:
                    break
                await asyncio.sleep(0.05)
            failover = time.perf_counter() - t_ban
            if poller.cycles["telethon"] == cyc:  # the cycle is still recording its outcome
                await wait_cycle(svc, cyc + 1)
            first_after = poller.cycles["telethon"] == cyc + 1
            moving = [c for c in poller.history if c.source == "telethon"][-1]
            spent = diff(before, counts(world))
            resolves = sum(world.accounts[n].counts["ResolveUsernameRequest"] for n in NAMES)
            fo = pool.failovers[-1]
            print(f"failover: {victim} banned; its {fo.channels} channels moved in the first cycle after the ban: "
                  f"{first_after}; all 20 new posts stored {failover:.1f} s after the ban = waiting for that cycle "
                  f"(~{failover - moving.seconds:.1f} s, at most one interval of {INTERVAL} s + jitter) + the cycle "
                  f"({moving.seconds:.1f} s; {fo.seconds:.1f} s from the ban seen to the channels polled by "
                  "the others)")
            print(f"  that cycle cost {sum(spent.values())} requests ({resolves} ResolveUsername: the others had "
                  f"not joined them); nothing lost or doubled: {stored - stored0} posts stored for 20 published")
            before = counts(world)
            done = poller.cycles["telethon"]
            await wait_cycle(svc, done + 1)
            after = diff(before, counts(world))
            print(f"  next cycle: {sum(after.values())} requests (400 channels nobody joined now cost a GetHistory "
                  "each; join them with a second account for a cheap failover)")
            rpm = 20
            per_acc = math.ceil(len(theirs) / (ACCOUNTS - 1))
            minutes = per_acc / (rpm / 4)
            print(f"  at the default {rpm} requests/min per account: {per_acc} resolves per account at {rpm // 4}/min "
                  f"= ~{minutes:.0f} min until every moved channel is read (deferred a few a cycle, never waited "
                  "for: the accounts' own channels go on)")
            # -------------------------------------------------------------- recovery
            world.accounts[victim].banned = False
            t_back = time.perf_counter()
            while True:
                async with rt_of(svc).store.sessions() as s:
                    n_back = (await s.execute(select(func.count()).select_from(m.Channel)
                                              .where(m.Channel.account == victim))).scalar_one()
                if n_back == len(theirs):
                    break
                if time.perf_counter() - t_back > 120:
                    break
                await asyncio.sleep(0.1)
            print(f"recovery: ban lifted; {n_back} of {len(theirs)} channels read by {victim} again "
                  f"{time.perf_counter() - t_back:.1f} s later (retry after {ja.RECHECK_DEAD:.0f} s here, "
                  "10 min in production)")


def rt_of(svc: InProcService) -> Runtime:
    rt = svc.service.ctx.rt
    assert rt is not None
    return rt


if __name__ == "__main__":
    asyncio.run(main())
