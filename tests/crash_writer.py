"""Run as a subprocess by test_crash.py: stores pages of posts, to be killed with SIGKILL mid-way.

usage: crash_writer.py CONFIG MODE   (MODE: hang-inside | pages | pages-workers)

``pages-workers`` matches every page in worker processes (and prints their pids first), so a test can
check that they die with their killed parent."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import load_settings
from monitor.posts import Post
from monitor.runtime import open_runtime
from monitor.store import SavedPost

PAGE = 200


class HangingPlanner:
    """Called inside the batch's transaction, after the posts are written: announce, then hang."""

    async def plan(self, session: object, channel: object, saved: Sequence[SavedPost]) -> int:
        print("INSIDE", len(saved), flush=True)
        await asyncio.sleep(3600)  # the scenario: the transaction stays open until the test's SIGKILL
        return 0


def page(start: int) -> list[Post]:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    return [Post(message_id=i, date=t0 + timedelta(seconds=i), text=f"Пост {i} про Росатом")
            for i in range(start, start + PAGE)]


async def main(config: str, mode: str) -> None:
    async with open_runtime(load_settings(Path(config))) as rt:
        ch = await rt.store.upsert_channel(username="crash_test", source="web")
        if mode == "hang-inside":
            rt.ingestor.planner = HangingPlanner()
            await rt.ingestor.ingest(ch, page(1), cursor=PAGE)
            return
        if mode == "pages-workers":
            rt.ingestor.workers = 2
            rt.ingestor.pool_min_posts = 1
            rt.ingestor.start_workers()
            pool = rt.ingestor._pool
            assert pool is not None
            await pool.starting
            print("WORKERS", *(w.pid for w in pool.workers), flush=True)
        start = (await rt.store.get_channel(ch.id)).cursor + 1
        while True:
            await rt.ingestor.ingest(ch, page(start), cursor=start + PAGE - 1)
            print("PAGE", start + PAGE - 1, flush=True)
            start += PAGE


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
