"""``tgmonitor run`` as a real subprocess against a local t.me/s-like server and a real json:// sink."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.service_helpers import MENTION, PLAIN, TGM, Proc, alert_rows, config_text, polled_again, posts, q
from tests.tme_server import wait_for

TESTS = Path(__file__).resolve().parent


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
    assert polled_again(pv), p.text()
    assert alert_rows(db) == (0, 0) and sink.count() == 0, sink.texts()  # no outbox row: nothing will be sent

    # more new posts than fit on one page (8): the poll pages back to the cursor
    expected = 0
    for n in range(5, 17):
        mention = n % 2 == 0
        expected += mention
        pv.add("svc_news", (MENTION if mention else PLAIN).format(n=n))
    assert wait_for(lambda: posts(db) == 17, 30), p.text()
    assert wait_for(lambda: alert_rows(db) == (expected, expected), 20), p.text()
    assert polled_again(pv), p.text()  # more polls: no new outbox row, and every row is sent
    assert alert_rows(db) == (expected, expected)
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
    assert wait_for(lambda: alert_rows(db) == (expected + 1, expected + 1), 20), p2.text()
    assert polled_again(pv), p2.text()
    assert alert_rows(db) == (expected + 1, expected + 1)
    assert sink.count() == expected + 1, sink.texts()
    rc, took = p2.stop()
    assert rc == 0 and took < 10, p2.text()


def test_sighup_applies_new_channels_and_keeps_the_old_config_when_invalid(tmp_path: Path, servers,
                                                                           procs) -> None:
    pv, port, sink, sport = servers
    pv.add("svc_one", PLAIN.format(n=1))
    pv.add("svc_two", PLAIN.format(n=2))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    with socket.socket() as probe:  # the dashboard served by the service ([web] listen) follows a reload too
        probe.bind(("127.0.0.1", 0))
        wport = probe.getsockname()[1]
    web = f'\n[web]\nlisten = "127.0.0.1:{wport}"\n'
    cfg.write_text(config_text(db, port, sport, ["svc_one"], extra=web + '\n[[entities]]\nname = "Газпром"\n'),
                   encoding="utf-8")
    p = Proc(cfg, tmp_path / "run.log")
    procs.append(p)
    assert wait_for(lambda: posts(db) == 1, 30), p.text()

    def entities_page() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{wport}/entities", headers={"accept": "text/html"}, timeout=5).text
        except httpx.HTTPError:
            return ""

    assert wait_for(lambda: "Газпром" in entities_page(), 20), p.text()
    assert "нет в конфигурации" not in entities_page()
    moved = f'\n[web]\nlisten = "127.0.0.1:{wport + 1}"\n'  # bound at start: a restart moves it, said so
    cfg.write_text(config_text(db, port, sport, ["svc_one", "svc_two"], extra=moved), encoding="utf-8")
    p.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: posts(db) == 2, 20), p.text()
    assert "configuration reloaded" in p.text()
    assert "[web] changes need a restart" in p.text()
    # the entity dropped from the config is shown as such (the stored mentions stay)
    assert wait_for(lambda: entities_page().count("нет в конфигурации") == 1, 10), p.text()

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


def _telegram_down_env(tmp_path: Path, failure: str, *, down_while: Path | None = None) -> dict[str, str]:
    import json

    spec = {"channels": [{"id": 8300001, "username": "tg_down", "posts": 3}], "unreachable": failure}
    if down_while is not None:
        spec["unreachable_while"] = str(down_while)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return {"PYTHONPATH": str(TESTS), "FAKE_TG_SPEC": str(tmp_path / "spec.json"), "TG_API_ID": "1",
            "TG_API_HASH": "0" * 32}


TG_EXTRA = ('\n[telegram]\nclient_factory = "fake_telegram:make_client"\n\n'
            '[[channels]]\nusername = "tg_down"\nsource = "telethon"\ninterval = 2\n')


def test_run_once_with_telegram_unreachable_still_polls_the_web_channel(tmp_path: Path, servers) -> None:
    pv, port, _sink, sport = servers
    pv.add("svc_web", PLAIN.format(n=1))
    pv.add("svc_web", MENTION.format(n=2))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    # the Telethon channel first: its failure must not keep the web channel from being polled
    cfg.write_text(config_text(db, port, sport, [], extra=TG_EXTRA + '\n[[channels]]\nusername = "svc_web"\n'
                               'source = "web"\n'), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_", "NOTIFY_"))}
    env.update(_telegram_down_env(tmp_path, "IncompleteReadError"))
    r = subprocess.run([TGM, "--config", str(cfg), "run", "--once"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # a failed cycle is non-zero — after every other source ran
    assert "cannot reach Telegram: IncompleteReadError" in out and "set [telegram] proxy" in out
    assert out.count("cannot reach Telegram") == 1, out
    assert "Aborted" not in out and "Traceback" not in out
    assert posts(db) == 2  # the web channel was polled


def test_run_keeps_polling_the_web_channel_while_telegram_is_down_and_recovers(tmp_path: Path, servers,
                                                                              procs) -> None:
    pv, port, _sink, sport = servers
    pv.add("svc_web2", PLAIN.format(n=1))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_web2"], interval=1, extra=TG_EXTRA), encoding="utf-8")
    flag = tmp_path / "telegram-down"
    flag.touch()
    p = Proc(cfg, tmp_path / "run.log", env=_telegram_down_env(tmp_path, "ConnectionError", down_while=flag))
    procs.append(p)
    assert wait_for(lambda: posts(db) == 1, 30), p.text()
    assert wait_for(lambda: "cannot reach Telegram" in p.text(), 30), p.text()
    pv.add("svc_web2", PLAIN.format(n=2))  # the web source goes on while Telegram is down
    assert wait_for(lambda: posts(db) == 2, 30), p.text()
    assert p.p.poll() is None, p.text()
    assert "retry_in=" in p.text() and "Traceback" not in p.text()
    flag.unlink()  # Telegram is back: the next attempt (the backoff's first step, ≤ 30 s) gets through
    assert wait_for(lambda: "Telegram reachable again" in p.text(), 45), p.text()
    assert wait_for(lambda: posts(db) == 5, 20), p.text()  # the Telethon channel's 3 posts
    rc, took = p.stop()
    assert rc == 0 and took < 10, p.text()


def test_run_and_run_once_with_the_database_unreachable_say_so_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text('[database]\nurl = "postgresql://bob:s3cret@127.0.0.1:1/nodb"\n\n'
                   '[[channels]]\nusername = "svc_nodb"\nsource = "web"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMONITOR_", "TG_", "NOTIFY_"))}
    for args in (("run", "--once"), ("run",)):
        r = subprocess.run([TGM, "--config", str(cfg), *args], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1, out
        assert "database postgresql://bob:***@127.0.0.1:1/nodb cannot be reached" in lines[0]
        assert "is PostgreSQL running there" in lines[0]
        assert "s3cret" not in out and "Traceback" not in out
