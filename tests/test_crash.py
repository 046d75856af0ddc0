"""A process killed with SIGKILL mid-batch leaves the whole batch with its cursor, or none of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from monitor.config import load_settings
from tests.tme_server import wait_for

WRITER = Path(__file__).with_name("crash_writer.py")


def start(config: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    return subprocess.Popen([sys.executable, str(WRITER), str(config), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_line(proc: subprocess.Popen[str], word: str, timeout: float = 60) -> str:
    """The writer's next output line starting with ``word``; an AssertionError if it exits first or none came
    within ``timeout`` (checked between lines: the writer prints a line at least every page)."""
    end = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith(word):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"writer exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError(f"no {word} within {timeout} s")


def state(db_url: str) -> tuple[int, int, int]:
    if db_url.startswith("postgresql"):
        import asyncio

        import asyncpg

        async def q() -> tuple[int, int, int]:
            conn = await asyncpg.connect(db_url)
            try:
                n = await conn.fetchval("select count(*) from posts")
                mx = await conn.fetchval("select coalesce(max(message_id), 0) from posts")
                cur = await conn.fetchval("select coalesce(max(cursor), 0) from channels")
                return int(n), int(mx), int(cur)
            finally:
                await conn.close()

        return asyncio.run(q())
    eng = create_engine(db_url)
    with eng.connect() as c:
        n = c.execute(text("select count(*) from posts")).scalar_one()
        mx = c.execute(text("select coalesce(max(message_id), 0) from posts")).scalar_one()
        cur = c.execute(text("select coalesce(max(cursor), 0) from channels")).scalar_one()
    eng.dispose()
    return int(n), int(mx), int(cur)


def test_kill_inside_the_transaction_leaves_nothing(write_config, db_url: str) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n', db_url)
    load_settings(cfg)
    p = start(cfg, "hang-inside")
    try:
        wait_line(p, "INSIDE")  # the posts and matches are written, the transaction is open
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert state(db_url) == (0, 0, 0), "a killed batch must leave neither posts nor cursor"


def test_kill_between_and_during_pages_keeps_batches_whole(write_config, db_url: str) -> None:
    cfg = write_config('[[entities]]\nname = "Росатом"\n', db_url)
    for delay in (0.0, 0.05, 0.13):
        p = start(cfg, "pages")
        try:
            wait_line(p, "PAGE")
            time.sleep(delay)  # the scenario: the kill lands at another moment of the next page's batch
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        finally:
            if p.poll() is None:
                p.kill()
        n, mx, cur = state(db_url)
        assert n % 200 == 0 and n == mx == cur, f"partial batch or cursor out of step: {(n, mx, cur)}"
    assert n >= 600  # each run resumed from the cursor and added at least one page


def test_kill_with_worker_processes_keeps_batches_whole_and_takes_the_workers(write_config, db_url: str) -> None:
    """Matching in worker processes changes nothing about a SIGKILL: whole batches, and the workers (which
    exit when their parent's pipe closes) do not outlive it."""
    cfg = write_config('[[entities]]\nname = "Росатом"\n', db_url)
    p = start(cfg, "pages-workers")
    try:
        pids = [int(x) for x in wait_line(p, "WORKERS").split()[1:]]
        assert len(pids) == 2
        wait_line(p, "PAGE")
        wait_line(p, "PAGE")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    n, mx, cur = state(db_url)
    assert n % 200 == 0 and n == mx == cur and n >= 400, f"partial batch or cursor out of step: {(n, mx, cur)}"
    assert wait_for(lambda: not any(_running(pid) for pid in pids), 10, step=0.05), (
        f"a matching worker outlived its killed parent: {[pid for pid in pids if _running(pid)]}")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, maybe later)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return False
