"""``tgmonitor run`` as a real subprocess against a local t.me/s-like server and a real json:// sink."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tme_server import Preview, Sink, alert_sink, preview_server, wait_for

TGM = str(Path(sys.executable).parent / "tgmonitor")
TESTS = Path(__file__).resolve().parent
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


@pytest.fixture
def servers() -> Iterator[tuple[Preview, int, Sink, int]]:
    with preview_server() as (pv, port), alert_sink() as (sink, sport):
        yield pv, port, sink, sport


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def test_run_stores_new_posts_alerts_once_and_stops_on_sigterm(tmp_path: Path, servers, procs) -> None:
    pv, port, sink, sport = servers
    for n in range(5):  # history: two mentions that must never alert (below the first poll's baseline)
        pv.add("svc_news", (MENTION if n % 2 else PLAIN).format(n=n))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_news"], interval=1), encoding="utf-8")
    p = Proc(cfg, tmp_path / "run.log")
    procs.append(p)
    assert wait_for(lambda: posts(db) == 5, 30), p.text()
    baseline_polls = len(pv.polls())
    assert wait_for(lambda: len(pv.polls()) >= baseline_polls + 2, 15), p.text()
    assert sink.count() == 0, sink.texts()

    # more new posts than fit on one page (8): the poll pages back to the cursor
    expected = 0
    for n in range(5, 17):
        mention = n % 2 == 0
        expected += mention
        pv.add("svc_news", (MENTION if mention else PLAIN).format(n=n))
    assert wait_for(lambda: posts(db) == 17, 30), p.text()
    assert wait_for(lambda: sink.count() >= expected, 20), p.text()
    polls = len(pv.polls())
    assert wait_for(lambda: len(pv.polls()) >= polls + 3, 15)  # more polls and drains: nothing more sent
    time.sleep(1)
    assert sink.count() == expected, sink.texts()
    assert all("Росатом" in t for t in sink.texts())

    rc, took = p.stop()
    assert rc == 0, p.text()
    assert took < 10
    assert "stopped" in p.text()
    assert q(db, "select count(*) from channels where lease_owner is not null") == [(0,)]

    # a restart sends nothing again, and a post made while it was down alerts once
    pv.add("svc_news", MENTION.format(n=99))
    p2 = Proc(cfg, tmp_path / "run2.log")
    procs.append(p2)
    assert wait_for(lambda: posts(db) == 18, 30), p2.text()
    assert wait_for(lambda: sink.count() >= expected + 1, 20), p2.text()
    time.sleep(2)
    assert sink.count() == expected + 1
    rc, took = p2.stop()
    assert rc == 0 and took < 10, p2.text()


def test_sighup_applies_new_channels_and_keeps_the_old_config_when_invalid(tmp_path: Path, servers,
                                                                           procs) -> None:
    pv, port, sink, sport = servers
    pv.add("svc_one", PLAIN.format(n=1))
    pv.add("svc_two", PLAIN.format(n=2))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_one"]), encoding="utf-8")
    p = Proc(cfg, tmp_path / "run.log")
    procs.append(p)
    assert wait_for(lambda: posts(db) == 1, 30), p.text()

    cfg.write_text(config_text(db, port, sport, ["svc_one", "svc_two"]), encoding="utf-8")
    p.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: posts(db) == 2, 20), p.text()
    assert "configuration reloaded" in p.text()

    cfg.write_text(config_text(db, port, sport, ["svc_one"]) + "\n[schedule]\nintervall = 5\n", encoding="utf-8")
    p.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in p.text(), 20), p.text()
    # the old configuration goes on: both channels are still polled, and new posts alert
    pv.add("svc_two", MENTION.format(n=3))
    assert wait_for(lambda: posts(db) == 3, 20), p.text()
    assert wait_for(lambda: sink.count() == 1, 20), p.text()
    rc, _ = p.stop()
    assert rc == 0, p.text()


def test_telethon_channels_without_an_authorised_session_exit_78(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n\n[telegram]\nclient_factory = '
                   f'"unauthorised_telegram:make_client"\n\n[[channels]]\nusername = "rian_ru"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_", "NOTIFY_"))}
    env["PYTHONPATH"] = str(TESTS)
    r = subprocess.run([TGM, "--config", str(cfg), "run"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 78, r.stderr
    assert "tgmonitor login" in r.stderr
    assert "Traceback" not in r.stderr
