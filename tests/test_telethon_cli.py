"""The Telethon source through real ``tgmonitor`` processes and the CLI: a backfill killed with SIGKILL resumes
without re-fetching, a revoked session exits 78 with the login message, ``login`` keeps secrets private."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import load_settings
from monitor.sources.telethon import ClientSetupError, default_client, parse_proxy
from tests.tme_server import wait_for

TESTS = Path(__file__).parent
TGMONITOR = Path(sys.executable).with_name("tgmonitor")


def _env(tmp_path: Path, spec: dict, log: Path) -> dict[str, str]:
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TGMONITOR_DATABASE_URL", "TG_SESSION", "TGMONITOR_CLIENT_FACTORY", "TGMONITOR_DATA_DIR")}
    env.update(PYTHONPATH=str(TESTS), FAKE_TG_SPEC=str(tmp_path / "spec.json"), FAKE_TG_LOG=str(log),
               TG_API_ID="1", TG_API_HASH="0" * 32)
    return env


def _config(tmp_path: Path, channel: str) -> Path:
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(f'''[database]
url = "sqlite:///{tmp_path / 'tg.db'}"

[telegram]
client_factory = "fake_telegram:make_client"

[schedule]
requests_per_minute = 100000

[[channels]]
username = "{channel}"

[[entities]]
name = "Росатом"
''')
    return cfg


def _history_requests(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.startswith("GetHistoryRequest"))


def test_backfill_killed_at_40_percent_resumes_without_gaps_duplicates_or_refetching(tmp_path: Path) -> None:
    log = tmp_path / "req.log"
    env = _env(tmp_path, {"channels": [{"id": 8100001, "username": "crash_chan", "posts": 5000}], "delay": 0.02},
               log)
    cfg = _config(tmp_path, "crash_chan")
    cmd = [str(TGMONITOR), "--config", str(cfg), "backfill", "crash_chan", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # watching another process (every 10 ms: the kill must land near 40 %), not timing the code under test
    assert wait_for(lambda: _history_requests(log) >= 21 or proc.poll() is not None, 60, step=0.01), (
        f"the backfill made {_history_requests(log)} of 21 history requests in 60 s")
    assert proc.poll() is None, f"the backfill ended before it could be killed: {proc.stdout.read()!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    db = sqlite3.connect(tmp_path / "tg.db")
    stored_at_kill = db.execute("select count(*) from posts").fetchone()[0]
    assert 1500 <= stored_at_kill <= 2500
    log.write_text("")  # count the second run's requests only
    env["FAKE_TG_SPEC"] = str(tmp_path / "spec2.json")
    (tmp_path / "spec2.json").write_text(json.dumps({"channels": [{"id": 8100001, "username": "crash_chan",
                                                                   "posts": 5000}]}))
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [r[0] for r in db.execute("select message_id from posts order by message_id")]
    assert ids == list(range(1, 5001))  # all, no gaps, no duplicates
    returned = sum(int(line.split("returned=")[1].split()[0]) for line in log.read_text().splitlines()
                   if "returned=" in line)
    assert returned <= 5000 - stored_at_kill + 100, "the first part was fetched again"
    assert "ResolveUsernameRequest" not in log.read_text()  # resolved once, by the first run
    assert db.execute("select backfill_done from channels").fetchone()[0] == 1


def test_run_once_with_a_revoked_session_exits_78_with_the_login_message(tmp_path: Path) -> None:
    log = tmp_path / "req.log"
    env = _env(tmp_path, {"channels": [{"id": 8200001, "username": "live_chan", "posts": 5}], "revoked": True}, log)
    cfg = _config(tmp_path, "live_chan")
    r = subprocess.run([str(TGMONITOR), "--config", str(cfg), "run", "--once"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 78, r.stdout + r.stderr
    assert "tgmonitor login" in r.stderr and "Traceback" not in r.stderr


def test_login_through_the_factory_never_shows_the_phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(tmp_path, {"channels": [], "logged_out": True}, tmp_path / "req.log")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setattr("monitor.cli.login.interactive", lambda: True)  # CliRunner's input stands in for a tty
    cfg = _config(tmp_path, "some_chan")
    r = CliRunner().invoke(main, ["--config", str(cfg), "login", "--print-session"], input="+79991234567\n12345\n")
    assert r.exit_code == 0, (r.output, repr(r.exception))
    assert "+79991234567" not in r.output.replace("Phone number (international format): +79991234567", "")
    assert "TG_SESSION=" in r.output
    bad = CliRunner().invoke(main, ["--config", str(cfg), "login"], input="+79991234567\n00000\n" * 3)
    assert bad.exit_code == 1 and "was wrong" in bad.output and "Traceback" not in bad.output


def test_default_client_session_file_is_private_and_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("TG_SESSION", "TGMONITOR_CLIENT_FACTORY", "TGMONITOR_DATA_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TG_API_ID", "12345")
    monkeypatch.setenv("TG_API_HASH", "a" * 32)
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(f'[telegram]\nsession_file = "{tmp_path / "s" / "acct"}"\nproxy = "socks5://u:p@127.0.0.1:1080"\n')
    settings = load_settings(cfg)
    with pytest.raises(ClientSetupError, match="tgmonitor login"):
        default_client(settings)  # no session yet: say so, never connect with an empty one
    client = default_client(settings, create_session_file=True)
    path = tmp_path / "s" / "acct.session"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert client.flood_sleep_threshold == 0
    client.session.close()
    assert parse_proxy("socks5://u:p@127.0.0.1:1080")[1] == {
        "proxy_type": "socks5", "addr": "127.0.0.1", "port": 1080, "rdns": True, "username": "u", "password": "p"}
    conn, proxy = parse_proxy("mtproxy://dd00112233@127.0.0.1:443")
    assert conn is not None and proxy == ("127.0.0.1", 443, "dd00112233")
    monkeypatch.delenv("TG_API_HASH")
    with pytest.raises(ClientSetupError, match="TG_API_ID and TG_API_HASH"):
        default_client(load_settings(cfg))


def test_login_without_a_terminal_fails_fast_before_connecting(tmp_path: Path) -> None:
    log = tmp_path / "req.log"
    env = _env(tmp_path, {"channels": [], "logged_out": True}, log)
    cfg = _config(tmp_path, "some_chan")
    r = subprocess.run([str(TGMONITOR), "--config", str(cfg), "login"], env=env, cwd=tmp_path,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "login needs an interactive terminal" in r.stderr
    assert "Aborted" not in r.stderr and "Traceback" not in r.stderr
    assert not log.exists() or log.read_text() == ""  # no request was sent: it never connected


def test_login_and_run_once_with_telegram_unreachable_say_so_in_one_line(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"channels": [{"id": 8400001, "username": "net_chan", "posts": 2}], "unreachable": "IncompleteReadError"}
    env = _env(tmp_path, spec, tmp_path / "req.log")
    cfg = _config(tmp_path, "net_chan")
    r = subprocess.run([str(TGMONITOR), "--config", str(cfg), "run", "--once"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot reach Telegram: IncompleteReadError" in r.stderr and "[telegram] proxy" in r.stderr
    assert "Aborted" not in r.stderr and "Traceback" not in r.stderr
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setattr("monitor.cli.login.interactive", lambda: True)
    login = CliRunner().invoke(main, ["--config", str(cfg), "login"], input="+79991234567\n12345\n")
    assert login.exit_code == 1, (login.output, repr(login.exception))
    assert "cannot reach Telegram" in login.output and "Traceback" not in login.output
