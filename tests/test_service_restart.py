"""``tgmonitor run`` as a real subprocess: SIGKILL and restart, the session lock, backfill queued for it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.service_helpers import MENTION, PLAIN, TGM, Proc, alert_rows, config_text, polled_again, posts, q
from tests.tme_server import Sink, wait_for


def codes(sink: Sink) -> set[str]:
    """The distinct alert ids (#a1b2c3) the sink received."""
    return {m for t in sink.texts() for m in re.findall(r"#([a-z][0-9a-z]{6})\b", t)}


def test_sigkill_and_restart_lose_and_repeat_nothing(tmp_path: Path, servers, procs) -> None:
    pv, port, sink, sport = servers
    pv.add("svc_crash", PLAIN.format(n=0))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_crash"], interval=1), encoding="utf-8")
    p = Proc(cfg, tmp_path / "run.log")
    procs.append(p)
    assert wait_for(lambda: posts(db) == 1, 30), p.text()
    total, mentions = 1, 0
    # posts keep arriving; the process is killed while it is storing and alerting them
    for n in range(1, 41):
        mention = n % 3 == 0
        mentions += mention
        pv.add("svc_crash", (MENTION if mention else PLAIN).format(n=n))
        total += 1
        if n == 20:
            assert wait_for(lambda: posts(db) > 10, 20), p.text()
            p.kill()
            p = Proc(cfg, tmp_path / "run2.log")
            procs.append(p)
        time.sleep(0.05)
    assert wait_for(lambda: posts(db) == total, 40), p.text()
    assert wait_for(lambda: alert_rows(db) == (mentions, mentions), 30), p.text()
    assert polled_again(pv), p.text()  # more polls: no new outbox row; every row is sent, so nothing more goes out
    assert alert_rows(db) == (mentions, mentions)
    # Every mention alerted, each under its own stable #code. Delivery is at-least-once: a SIGKILL landing
    # between the HTTP send and the commit that marks the row sent repeats that one message (same #code,
    # which receivers de-duplicate on); nothing else may repeat.
    assert len(codes(sink)) == mentions, sink.texts()
    assert mentions <= sink.count() <= mentions + 1, sink.texts()
    ids = [r[0] for r in q(db, "select message_id from posts order by message_id")]
    assert ids == list(range(2, total + 2))
    assert q(db, "select cursor from channels") == [(total + 1,)]
    assert q(db, "select count(*) from alerts where status = 'sent'") == [(mentions,)]
    rc, _ = p.stop()
    assert rc == 0, p.text()


def test_second_process_is_refused_and_backfill_is_queued_for_the_service(tmp_path: Path, servers, procs) -> None:
    pv, port, _sink, sport = servers
    for n in range(30):
        pv.add("svc_lock", PLAIN.format(n=n))
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_lock"], interval=30), encoding="utf-8")
    p = Proc(cfg, tmp_path / "run.log")
    procs.append(p)
    assert wait_for(lambda: posts(db) >= 8, 30), p.text()  # the first poll reads the newest page

    for args in (("run",), ("run", "--once")):
        r = subprocess.run([TGM, "--config", str(cfg), *args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1
        assert f"in use by process {p.p.pid}" in r.stderr
        assert "Traceback" not in r.stderr

    r = subprocess.run([TGM, "--config", str(cfg), "backfill", "@svc_lock", "--no-progress"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr + p.text()
    assert "queued as request #1" in r.stderr
    assert "stored by the service" in r.stdout
    assert posts(db) == 30
    assert q(db, "select status, error from backfill_requests") == [("done", None)]

    st = subprocess.run([TGM, "--config", str(cfg), "status", "--format", "json"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["service"] == {"running": True, "pid": p.p.pid, "state": "ok", "reason": None, "since": None}
    (ch,) = doc["channels"]
    assert ch["channel"] == "@svc_lock" and ch["posts"] == 30 and ch["cursor"] == 31 and ch["status"] == "active"
    assert ch["last_poll"] is not None and ch["lag_seconds"] is not None and ch["lease_owner"]
    assert doc["outbox"]["pending"] == 0

    rc, _ = p.stop(signal.SIGINT)
    assert rc == 0, p.text()
    table = subprocess.run([TGM, "--config", str(cfg), "status"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0
    assert "service: not running here" in table.stdout
    assert "@svc_lock" in table.stdout and "outbox:" in table.stdout
