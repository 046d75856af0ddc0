"""One Telegram session, one process: an exclusive ``fcntl`` lock on a file beside the session.

Two processes on one Telethon session make its store fail with "database is locked" and make the account
look hijacked to Telegram. The lock is taken by ``tgmonitor run`` (and ``run --once``); ``backfill`` asks
:func:`holder` and queues its work for the running service instead. The kernel drops the lock when the
process dies, so a crash never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from monitor.config import Settings


class LockHeld(Exception):
    """Another process holds the session lock; the message says which and what to do."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"the Telegram session is in use by {who} (lock {path}): only one tgmonitor process may use "
            f"a session at a time; stop the running service first (systemctl stop tgmonitor), or use "
            f"another data directory with its own session")
        self.path = path
        self.pid = pid


def lock_path(settings: Settings) -> Path:
    """The lock file: beside the session file (the data directory by default)."""
    session = settings.telegram.session_file or (settings.data_dir / "tgmonitor.session")
    return session.with_name(session.name + ".lock")


class SessionLock:
    """An exclusive, non-blocking lock; ``acquire`` raises :class:`LockHeld` instead of waiting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The pid is informative only (for the message above); the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> SessionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(path: Path) -> int | None:
    """The pid holding the lock at ``path`` (0 when the pid is unknown), or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None
