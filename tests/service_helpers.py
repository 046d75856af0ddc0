"""Helpers for the tests that run ``tgmonitor`` as a real subprocess (against ``tests.tme_server``): the
config it reads, the process itself, and read-only looks into its SQLite database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
