"""Adaptive web poll intervals (issue 12): busy channels are polled more often, down to ``[sources.web]
min_interval``, quiet ones at their interval, and the planned polls stay within ``requests_per_minute`` — the
planner by itself, and the real service against a local t.me/s replica."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import Settings
from monitor.jobs.web import PLAN_SHARE, plan_intervals, posting_rate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_posting_rate_from_the_newest_page() -> None:
    busy = [NOW - timedelta(minutes=m) for m in range(20, 0, -1)]  # 20 posts in the last 20 minutes
    assert abs(posting_rate(busy, NOW) - 20 / 1200) < 1e-9
    some = [NOW - timedelta(days=2), NOW - timedelta(hours=1), NOW - timedelta(hours=2)]
    assert abs(posting_rate(some, NOW) - 2 / (6 * 3600)) < 1e-9  # two inside the 6 h window
    assert posting_rate([NOW - timedelta(days=3)], NOW) == 0.0
    assert posting_rate([], NOW) == 0.0


def test_busy_channels_polled_more_often_quiet_ones_at_their_interval() -> None:
    base = {"@busy": 300.0, "@medium": 300.0, "@quiet": 300.0, "@fast_config": 30.0}
    rates = {"@busy": 1 / 20, "@medium": 1 / 120, "@quiet": 0.0, "@fast_config": 1.0}
    plan = plan_intervals(rates, base, 60, 20)
    assert plan["@busy"] == 60.0  # one post every 20 s: as often as min_interval allows
    assert plan["@medium"] == 120.0  # one poll per post
    assert plan["@quiet"] == 300.0
    assert plan["@fast_config"] == 30.0  # configured below min_interval: never slowed down


def test_the_plan_never_needs_more_than_the_budget() -> None:
    n = 50
    base = {f"@c{i}": 300.0 for i in range(n)}
    rates = {f"@c{i}": 1 / (10 + i) for i in range(n)}  # every channel posts every 10–60 s
    for rpm in (10, 20, 60, 200, 1000):
        plan = plan_intervals(rates, base, 60, rpm)
        load = sum(60 / v for v in plan.values())
        needed_anyway = n * 60 / 300  # what the configured intervals alone need
        assert load <= max(PLAN_SHARE * rpm, needed_anyway) + 1e-6, (rpm, load)
        assert all(60 <= v <= 300 for v in plan.values())
        if PLAN_SHARE * rpm <= needed_anyway:
            assert plan == base  # no spare budget: nobody is polled more often
    # enough budget for everybody: each busy channel is polled at min_interval
    assert set(plan_intervals(rates, base, 60, 1000).values()) == {60.0}
    # the spare budget is shared: a busier channel never gets a longer interval than a quieter one
    plan = plan_intervals(rates, base, 60, 40)
    ordered = [plan[f"@c{i}"] for i in range(n)]
    assert ordered == sorted(ordered)


async def test_service_polls_a_busy_web_channel_more_often_than_a_quiet_one(
        tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    from tests.service_helpers import InProcService
    from tests.tme_server import preview_server, wait_until

    with preview_server() as (pv, port):
        quiet = pv.channel("pace_quiet")
        for i in range(5):  # posted days ago
            quiet.posts.append((i + 2, f"старое {i}", (datetime.now(UTC) - timedelta(days=3 - i / 10))
                                .replace(microsecond=0).isoformat()))
        for i in range(8):  # posted within the last seconds: a busy channel
            pv.add("pace_busy", f"новость {i}")
        chans = "".join(f'\n[[channels]]\nusername = "{n}"\nsource = "web"\n' for n in ("pace_quiet", "pace_busy"))
        settings = make_settings(
            f'[database]\nurl = "sqlite:///{tmp_path / "w.db"}"\n\n[schedule]\ninterval = 6\njitter = 0\n\n'
            f'[sources.web]\nbase_url = "http://127.0.0.1:{port}"\nrequests_per_minute = 600\nmin_interval = 1\n'
            f'\n[[entities]]\nname = "Росатом"\n{chans}')
        async with InProcService(settings, None) as svc:
            assert await svc.wait_cycles("web", 1, 30)
            t0 = time.time()

            def busy_paced() -> bool:
                polls = Counter(c for _, c in pv.polls(t0))
                return polls["pace_busy"] >= 3 * max(1, polls["pace_quiet"])

            # a busy channel polled 3 times as often shows within one quiet interval (6 s); a shared pace never
            assert await wait_until(busy_paced, 15, step=0.2), Counter(c for _, c in pv.polls(t0))
            polls = Counter(c for _, c in pv.polls(t0))
            poller = svc.service.poller
            assert poller.interval("@pace_quiet") == 6.0
            assert poller.interval("@pace_busy") < 2.0
        assert svc.task is not None and svc.task.result() == 0
    assert polls["pace_busy"] >= 3 * max(1, polls["pace_quiet"]), polls
