"""The SQLite database file the service has open: a watch notices when it is deleted or replaced under it
(SQLite would go on writing into the unlinked inode, and everything written from then on would vanish when the
process exits). The marker that makes every command refuse to start again on a missing file is in
:mod:`monitor.runtime` (``missing_database``, ``remember``).

PostgreSQL needs no watch: a database that is gone cannot be connected to, and says so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monitor.config import Settings
from monitor.runtime import database_file


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
