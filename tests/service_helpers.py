"""Helpers for the tests that run ``tgmonitor`` as a real subprocess (against ``tests.tme_server``): the
config it reads, the process itself, and read-only looks into its SQLite database; and the service run in the
test's own event loop against the in-process fake Telegram (:class:`InProcService`, also used by the
benchmarks)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TGM = str(Path(sys.executable).parent / "tgmonitor")
MENTION = "Госкорпорация Росатом сообщила о новом контракте №{n}."
PLAIN = "Погода в регионе: без осадков, запись {n}."


def config_text(db: Path, port: int, sink_port: int, channels: list[str], *, interval: int = 2,
                extra: str = "") -> str:
    chans = "".join(f'\n[[channels]]\nusername = "{c}"\nsource = "web"\ninterval = {interval}\n' for c in channels)
    return (f'[database]\nurl = "sqlite:///{db}"\n\n[schedule]\njitter = 0\n\n'
            f'[sources.web]\nbase_url = "http://127.0.0.1:{port}"\nrequests_per_minute = 6000\n\n'
            f'[[entities]]\nname = "Росатом"\n\n[[alerts]]\nname = "sink"\nurl = "json://127.0.0.1:{sink_port}/hook"\n'
            f'{chans}{extra}')


class Proc:
    """One ``tgmonitor run`` process; its log goes to a file the test can show on failure."""

    def __init__(self, cfg: Path, log: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ("run",)):
        self.log = log
        e = {k: v for k, v in os.environ.items()
             if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "TGMONITOR_DATABASE_URL", "TG_SESSION",
                          "TGMONITOR_CLIENT_FACTORY", "TGMONITOR_DATA_DIR", "STATE_DIRECTORY")}
        e.update(env or {})
        self.p = subprocess.Popen([TGM, "--config", str(cfg), *args], cwd=cfg.parent, env=e,
                                  stdout=log.open("a"), stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        t = time.monotonic()
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = -999
        return rc, time.monotonic() - t

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def q(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        con = sqlite3.connect(db, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def posts(db: Path) -> int:
    r = q(db, "select count(*) from posts")
    return int(r[0][0]) if r else 0  # type: ignore[arg-type]


def alert_rows(db: Path) -> tuple[int, int]:
    """(outbox rows, rows sent) of a SQLite database."""
    r = q(db, "select count(*), coalesce(sum(status = 'sent'), 0) from alerts")
    return (int(r[0][0]), int(r[0][1])) if r else (0, 0)  # type: ignore[call-overload]


def polled_again(pv: Any, times: int = 2, timeout: float = 20) -> bool:
    """Wait until every channel polled so far has been polled ``times`` more times. What "nothing more
    happens" waits for instead of a sleep: a repeated alert would be a new outbox row written by one of those
    polls (each committed before the next poll's request), so the rows can then be counted."""
    from tests.tme_server import wait_for

    def per_channel() -> dict[str, int]:
        counts: dict[str, int] = {}
        for _prefix, ch in pv.polls():
            counts[ch] = counts.get(ch, 0) + 1
        return counts

    start = per_channel()
    return wait_for(lambda: all(per_channel().get(c, 0) >= n + times for c, n in start.items()), timeout)


# --------------------------------------------------------------------------- the service in this process

#: the fake Telegram that :func:`inproc_client` connects to (set by :class:`InProcService`)
SERVER: Any = None


def inproc_client(settings: Any = None) -> Any:
    """``[telegram] client_factory`` for a service run in this process: a real Telethon client whose network
    sender is the in-process fake of :data:`SERVER`."""
    from fake_telegram import fake_client  # tests/ is on sys.path for the tests and the benchmarks

    assert SERVER is not None, "InProcService sets the fake server first"
    return fake_client(SERVER)


def factory_spec() -> str:
    """The ``client_factory`` naming :func:`inproc_client` under the name this module was imported as (as
    ``tests.service_helpers`` by the tests, ``service_helpers`` by the benchmarks: two module objects)."""
    return f"{__name__}:inproc_client"


class InProcService:
    """``tgmonitor run`` (the real :class:`~monitor.service.core.Service`: scheduler, poll cycles, leases,
    delivery) as a task of this event loop, against an in-process fake Telegram; stopped like by SIGTERM."""

    def __init__(self, settings: Any, server: Any) -> None:
        global SERVER
        import monitor.jobs.telethon_base as base
        from monitor.service.core import Service

        SERVER = server
        base._BUDGET = None  # the process-wide Telegram budget is built from the settings of its first user
        self.service = Service(settings, None, env={})
        self.task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> InProcService:
        self.task = asyncio.create_task(self.service.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> int:
        """SIGTERM's path: the clean stop; the exit code."""
        assert self.task is not None
        self.service.ctx.stop_event.set()
        return await asyncio.wait_for(self.task, 30)

    async def wait_cycles(self, source: str, n: int, within: float = 60) -> bool:
        """Wait until ``n`` poll cycles of ``source`` have finished (False after ``within`` seconds, or when
        the service ended)."""
        poller = self.service.poller
        try:
            async with asyncio.timeout(within), poller.cycle_done:
                while poller.cycles.get(source, 0) < n:
                    if self.task is not None and self.task.done():
                        return False
                    await poller.cycle_done.wait()
        except TimeoutError:
            return False
        return True
