"""sd_notify(3) over ``NOTIFY_SOCKET``: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1.

Sends are non-blocking datagrams: a notify socket that nobody reads (its queue full) drops the message
instead of freezing the service, and outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op. Only the
standard library is used, so there is no native build."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from monitor.logs import event

log = logging.getLogger(__name__)


class Notifier:
    """One process's line to systemd. Every method returns whether the datagram left."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET") or ""
        # "@name" is an abstract-namespace socket (Linux): the leading @ stands for a NUL byte.
        self.address: str | None = ("\0" + addr[1:]) if addr.startswith("@") else (addr or None)
        self.watchdog_usec = _watchdog_usec(env)
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        """systemd's watchdog timeout in seconds (``WatchdogSec=``), or None when it is off."""
        return self.watchdog_usec / 1e6 if self.watchdog_usec else None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; never blocks, never raises."""
        if self.address is None:
            return False
        msg = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                s.setblocking(False)
                self._sock = s
            self._sock.sendto(msg, self.address)
            return True
        except (BlockingIOError, InterruptedError):
            # The receiver's queue is full (systemd busy, or a test that never reads): drop, never wait.
            self.dropped += 1
            return False
        except OSError as exc:
            self.dropped += 1
            if not self._warned:
                self._warned = True
                event(log, logging.WARNING, "sd_notify failed", error=exc.strerror or str(exc))
            return False

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``Type=notify`` units become active now)."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """A one-line description of what the service is doing (``systemctl status`` shows it)."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Tell systemd we are alive and making progress."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _watchdog_usec(env: Mapping[str, str]) -> int:
    """``WATCHDOG_USEC`` when it is meant for this process (``WATCHDOG_PID`` absent or ours), else 0."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip().isdigit() and int(pid) != os.getpid():
        return 0
    raw = (env.get("WATCHDOG_USEC") or "").strip()
    return int(raw) if raw.isdigit() else 0
