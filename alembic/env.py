"""Alembic environment: tgmonitor passes a live connection in ``config.attributes['connection']``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from monitor.models import DIALECT_ONLY_OBJECTS, Base

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate ignores the dialect-only search objects of migration 0003 (FTS5 table, raw indexes)."""
    return not (name and name.startswith(DIALECT_ONLY_OBJECTS))


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_include_name,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )


connection = config.attributes.get("connection")
if connection is not None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
else:  # plain `alembic` command line with sqlalchemy.url set (sync driver)
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///data/tgmonitor.db")
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
