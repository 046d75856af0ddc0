"""The PostgreSQL server the benchmarks make their scratch databases on (the same variable the tests read), and
a way to run one administrative statement (CREATE/DROP DATABASE) against it."""

from __future__ import annotations

import os

PG_ADMIN_URL = os.environ.get("TGMONITOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def admin(sql: str) -> None:
    """Run ``sql`` on the administrative database of ``PG_ADMIN_URL`` (outside a transaction, as CREATE DATABASE
    needs)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(PG_ADMIN_URL)
    con = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username or "postgres",
                                password=u.password, database=u.database or "postgres")
    try:
        await con.execute(sql)
    finally:
        await con.close()
