"""Alembic, driven from code: works from any working directory and from an installed wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine


def script_location() -> Path:
    """``monitor/_alembic`` inside a wheel, ``alembic/`` at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("alembic migrations not found beside the monitor package")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    return cfg


async def _run(engine: AsyncEngine, fn: Any) -> Any:
    async with engine.begin() as conn:
        return await conn.run_sync(fn)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    cfg = alembic_config()

    def go(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            # Several services starting at once on one database: one migrates, the others wait for its
            # transaction and then find the schema at head (the lock ends with the transaction).
            sync_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240051)")
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    await _run(engine, go)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema down to ``revision`` (``base`` drops everything)."""
    cfg = alembic_config()

    def go(sync_conn: Any) -> None:
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    await _run(engine, go)


async def current(engine: AsyncEngine) -> tuple[str | None, str]:
    """(the database's revision or None, the newest revision shipped)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head() or ""

    def go(sync_conn: Any) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    return await _run(engine, go), head


def new_revision(message: str) -> None:
    """Autogenerate a revision against a scratch SQLite database at head (a developer tool):
    ``uv run python -c 'from monitor.migrate import new_revision; new_revision("add x")'``."""
    import tempfile

    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        cfg = alembic_config()
        cfg.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "alembic"))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            command.revision(cfg, message=message, autogenerate=True)
