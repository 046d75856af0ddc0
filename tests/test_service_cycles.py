"""The poll loop of the real service (scheduler, leases, runners) in this event loop, against the in-process fake
Telegram: one poll cycle per source, its channels in one batch (one GetPeerDialogs per 100 joined channels),
and a request budget whose waits hold up nobody else."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

from fake_telegram import FakeTelegram

from monitor.budget import Deferred, RequestBudget
from monitor.config import Settings
from monitor.service.context import poll_cycle_job_id
from tests.service_helpers import InProcService, factory_spec, q


def _config(db: Path, n: int, *, interval: int, jitter: float) -> str:
    chans = "".join(f'\n[[channels]]\nusername = "cyc_{i:04d}"\n' for i in range(n))
    return (f'[database]\nurl = "sqlite:///{db}"\n\n'
            f'[telegram]\nclient_factory = "{factory_spec()}"\npush = false\n\n'
            f'[schedule]\ninterval = {interval}\njitter = {jitter}\nrequests_per_minute = 1000000\n\n'
            f'[[entities]]\nname = "Росатом"\n{chans}')


async def test_one_cycle_per_source_polls_every_due_channel_in_one_batch(
        tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    n = 250
    server = FakeTelegram()
    for i in range(n):
        server.add(7_100_000 + i, f"cyc_{i:04d}").post("старый пост")
    db = tmp_path / "t.db"
    # a wide spread (jitter 0.5 of a 2 s interval): per-channel jobs scattered 250 channels over many batches
    settings = make_settings(_config(db, n, interval=2, jitter=0.5))
    async with InProcService(settings, server) as svc:
        assert await svc.wait_cycles("telethon", 1, 120)  # the first cycle resolves every channel once
        resolves = server.count("ResolveUsernameRequest")
        assert resolves == n
        dialogs = server.count("GetPeerDialogsRequest")
        assert await svc.wait_cycles("telethon", 4, 60)
        poller = svc.service.poller
        cycles = poller.cycles["telethon"] - 1
        # every later cycle: all 250 channels in one batch, one GetPeerDialogs per 100 of them, nothing else
        assert server.count("GetPeerDialogsRequest") - dialogs == cycles * math.ceil(n / 100)
        assert server.count("ResolveUsernameRequest") == resolves
        later = [c for c in poller.history if c.source == "telethon"][1:]
        assert [c.channels for c in later] == [n] * len(later)
        sched = svc.service.ctx.scheduler
        assert sched is not None
        assert [j.id for j in sched.get_jobs() if j.id.startswith("poll")] == [poll_cycle_job_id("telethon")]
    assert svc.task is not None and svc.task.result() == 0
    # the poll time of the whole cycle is one write, and every channel has it
    assert q(db, "select count(*) from channels where last_poll_at is null") == [(0,)]


async def test_new_posts_found_in_the_cycle_after_they_appear(
        tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    server = FakeTelegram()
    chans = [server.add(7_200_000 + i, f"cyc_{i:04d}") for i in range(3)]
    for ch in chans:
        ch.post("старый пост")
    db = tmp_path / "t.db"
    settings = make_settings(_config(db, 3, interval=1, jitter=0.1))
    async with InProcService(settings, server) as svc:
        assert await svc.wait_cycles("telethon", 1, 60)
        seen = svc.service.poller.cycles["telethon"]
        chans[1].post("Росатом: новость")
        chans[2].post("новость без упоминаний")
        assert await svc.wait_cycles("telethon", seen + 2, 30)
        assert q(db, "select count(*) from posts") == [(5,)]
        assert sum(c.new for c in svc.service.poller.history) == 5


async def test_budget_waits_without_holding_up_other_request_types() -> None:
    budget = RequestBudget(6000, per_type={"slow": 6000}, burst=100)
    budget.defer("slow", 0.5)  # a flood wait on one request type
    t0 = time.monotonic()
    slow = asyncio.create_task(budget.acquire("slow"))
    await asyncio.sleep(0)  # the slow one is waiting now
    await asyncio.wait_for(budget.acquire("fast"), 0.2)  # another type goes at once
    assert time.monotonic() - t0 < 0.3 and not slow.done()
    await asyncio.wait_for(slow, 2)
    assert time.monotonic() - t0 >= 0.5
    assert budget.used == 2
    # a caller that must not wait is told how long instead
    budget.defer("slow", 60)
    try:
        await budget.acquire("slow", max_wait=1)
    except Deferred as d:
        assert d.kind == "slow" and 59 < d.seconds <= 60
    else:
        raise AssertionError("a 60 s flood wait must defer, not sleep")
