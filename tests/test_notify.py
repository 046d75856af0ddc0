"""sd_notify: a fake NOTIFY_SOCKET (a Unix datagram socket in the test) plays systemd's side."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.notify import Notifier
from tests.service_helpers import PLAIN, Proc, config_text, posts
from tests.tme_server import alert_sink, preview_server, wait_for


class Listener:
    """Reads the socket all the time, as systemd does."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.heard: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.heard.append(self.sock.recv(4096).decode())
            except OSError:
                return

    def said(self, word: str) -> bool:
        return any(word in m.split("\n") for m in list(self.heard))

    def close(self) -> None:
        self.sock.close()


def fill(path: Path) -> int:
    """Fill the receive queue of the socket at ``path`` until the kernel refuses more."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    n = 0
    try:
        while True:
            s.sendto(b"X" * 512, str(path))
            n += 1
    except BlockingIOError:
        return n
    finally:
        s.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "notify.sock"


def test_notifier_sends_datagrams(sock_path: Path) -> None:
    lst = Listener(sock_path)
    try:
        n = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "3000000"})
        assert n.enabled and n.watchdog_seconds == 3.0
        assert n.ready("polling 2 channels")
        assert n.watchdog()
        assert n.status("line one\nline two")
        assert n.stopping()
        assert wait_for(lambda: len(lst.heard) == 4, 5)
        assert lst.heard[0] == "READY=1\nSTATUS=polling 2 channels"
        assert lst.heard[1:] == ["WATCHDOG=1", "STATUS=line one line two", "STOPPING=1"]
        n.close()
    finally:
        lst.close()


def test_notifier_is_a_no_op_outside_systemd_and_ignores_a_foreign_watchdog() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None  # the watchdog is for another process
    assert other.watchdog() is False  # an absent socket is reported as not sent, never raised


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"tgm-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        s.settimeout(5)
        assert s.recv(100) == b"READY=1"
    finally:
        s.close()


def test_a_full_socket_never_blocks(sock_path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))  # nobody reads it
    try:
        assert fill(sock_path) > 0
        n = Notifier({"NOTIFY_SOCKET": str(sock_path)})
        results = [n.watchdog() for _ in range(1000)]  # returns at once each time: never waits for room
        assert not any(results)
        assert n.dropped == 1000
    finally:
        s.close()


def _service(tmp_path: Path, port: int, sport: int, env: dict[str, str]) -> tuple[Proc, Path]:
    db = tmp_path / "t.db"
    cfg = tmp_path / "tgmonitor.toml"
    cfg.write_text(config_text(db, port, sport, ["svc_notify"], interval=1), encoding="utf-8")
    return Proc(cfg, tmp_path / "run.log", env=env), db


def test_service_sends_ready_watchdog_and_stopping(tmp_path: Path, sock_path: Path) -> None:
    lst = Listener(sock_path)
    with preview_server() as (pv, port), alert_sink() as (_sink, sport):
        pv.add("svc_notify", PLAIN.format(n=1))
        p, db = _service(tmp_path, port, sport, {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"})
        try:
            assert wait_for(lambda: lst.said("READY=1"), 30), p.text()
            assert wait_for(lambda: posts(db) == 1, 20), p.text()
            assert wait_for(lambda: sum(m == "WATCHDOG=1" for m in lst.heard) >= 2, 15), lst.heard
            assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in lst.heard)
            rc, took = p.stop()
            assert rc == 0 and took < 10, p.text()
            assert lst.said("STOPPING=1")
            # READY comes before STOPPING, once each
            ready = next(i for i, m in enumerate(lst.heard) if "READY=1" in m.split("\n"))
            stopping = next(i for i, m in enumerate(lst.heard) if "STOPPING=1" in m.split("\n"))
            assert ready < stopping
        finally:
            p.kill()
            lst.close()


def test_service_stops_on_sigterm_when_nobody_reads_the_socket(tmp_path: Path, sock_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(sock_path))
    fill(sock_path)  # full from the start: every send of the service finds no room
    with preview_server() as (pv, port), alert_sink() as (_sink, sport):
        pv.add("svc_notify", PLAIN.format(n=1))
        p, db = _service(tmp_path, port, sport, {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
        try:
            assert wait_for(lambda: posts(db) == 1, 30), p.text()
            pv.add("svc_notify", PLAIN.format(n=2))
            assert wait_for(lambda: posts(db) == 2, 20), p.text()  # it goes on working
            rc, took = p.stop(signal.SIGTERM)
            assert rc == 0 and took < 10, p.text()
        finally:
            p.kill()
            dead.close()
