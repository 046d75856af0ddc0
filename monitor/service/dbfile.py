"""The SQLite database file as the service knows it: a marker in the data directory remembers that the file
existed, so a start that finds it gone refuses (one line; ``tgmonitor db upgrade`` creates a new one
explicitly) instead of silently beginning again with an empty archive; and a watch notices when the file
the service has open is deleted or replaced under it (SQLite would go on writing into the unlinked inode,
and everything written from then on would vanish when the process exits).

PostgreSQL needs neither: a database that is gone cannot be connected to, and says so."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from monitor.config import Settings
from monitor.db import sqlite_path
from monitor.logs import event

log = logging.getLogger("monitor.scheduler")

MARKER = "database.known"


def database_file(settings: Settings) -> Path | None:
    """The SQLite file of the configured database (absolute), None for PostgreSQL or in-memory."""
    path = sqlite_path(settings.database.url)
    return path.resolve() if path is not None else None


def marker_path(settings: Settings) -> Path:
    """The marker: in the data directory, beside the session and its lock."""
    return settings.data_dir / MARKER


def _known(settings: Settings) -> set[str]:
    try:
        data = json.loads(marker_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(p) for p in data.get("databases", [])} if isinstance(data, dict) else set()


def missing_database(settings: Settings) -> str | None:
    """The refusal line when the SQLite file this data directory has used before is gone, else None."""
    path = database_file(settings)
    if path is None or path.exists() or str(path) not in _known(settings):
        return None
    return (f"the database file {path} is missing, but this data directory ({settings.data_dir}) has used it "
            f"before: restore it from a backup (or a {path.name}.recovered-* file beside it), or run "
            "`tgmonitor db upgrade` to start again with an empty database")


def remember(settings: Settings) -> None:
    """Note in the marker that the configured SQLite file exists and is in use (best effort: a data
    directory that cannot be written only loses this protection)."""
    path = database_file(settings)
    if path is None or not path.exists():
        return
    known = _known(settings)
    if str(path) in known:
        return
    marker = marker_path(settings)
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"databases": sorted(known | {str(path)})}, f)
        os.replace(tmp, marker)
    except OSError as exc:
        event(log, logging.WARNING, "cannot write the database marker", path=str(marker),
              error=exc.strerror or str(exc))


@dataclass(frozen=True, slots=True)
class FileWatch:
    """The identity (device, inode) of the SQLite file when the service opened it."""

    path: Path
    dev: int
    ino: int

    @classmethod
    def open(cls, settings: Settings) -> FileWatch | None:
        """Watch the configured SQLite file (None for PostgreSQL, or when it cannot be looked at)."""
        path = database_file(settings)
        if path is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        return cls(path, st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why the file at the path is no longer the one the service writes, or None while it is."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return f"the database file {self.path} was deleted while the service was running"
        except OSError as exc:
            return f"the database file {self.path} cannot be looked at: {exc.strerror or exc}"
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            return f"the database file {self.path} was replaced by another file while the service was running"
        return None

    def rescue_path(self, stamp: str) -> Path:
        """Where what the service still has open is saved: beside the file, named after it."""
        return self.path.with_name(f"{self.path.name}.recovered-{stamp}")
