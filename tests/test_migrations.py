"""Alembic: empty → head → base on both databases, and the models agree with the migrations."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from monitor import migrate
from monitor.config import to_async_url
from monitor.db import create_engine
from monitor.models import DIALECT_ONLY_OBJECTS, Base


async def test_upgrade_downgrade_and_models_agree(db_url: str) -> None:
    engine = create_engine(to_async_url(db_url))
    try:
        assert (await migrate.current(engine))[0] is None
        await migrate.upgrade(engine)
        cur, head = await migrate.current(engine)
        assert cur == head and head

        def check(sync_conn: Any) -> tuple[set[str], list[Any]]:
            tables = set(inspect(sync_conn).get_table_names())
            ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            return tables, compare_metadata(ctx, Base.metadata)

        async with engine.connect() as conn:
            tables, diff = await conn.run_sync(check)
        assert set(Base.metadata.tables) <= tables
        # FTS shadow tables and other dialect-specific objects are made in migrations, not models
        diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name not in Base.metadata.tables
                                        and d[1].name.startswith(("posts_fts", "alembic")))]
        # raw-SQL search indexes of migration 0003 (GIN on PostgreSQL, partial on SQLite): see DIALECT_ONLY_OBJECTS
        diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name.startswith(DIALECT_ONLY_OBJECTS))]
        # PostgreSQL's stored tsvector column (migration 0006): ("remove_column", schema, table, column)
        diff = [d for d in diff if not (d[0] == "remove_column" and d[3].name in DIALECT_ONLY_OBJECTS)]
        assert diff == [], f"models and migrations disagree: {diff}"

        await migrate.downgrade(engine, "base")
        async with engine.connect() as conn:
            left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not (left & set(Base.metadata.tables)), f"downgrade left tables behind: {left}"
        await migrate.upgrade(engine)  # and back up again from an emptied database
        assert (await migrate.current(engine))[0] == head
    finally:
        await engine.dispose()


def test_migrations_found_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (migrate.script_location() / "env.py").is_file()
