"""PostgreSQL search: a stored tsvector column under the GIN index

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 01:40:00

Ranking (``ts_rank_cd``) and phrase checks need each matching post's tsvector. With only an expression
index, PostgreSQL recomputed ``to_tsvector('russian', text)`` for every candidate row at query time
(a common word in a 1M-post archive: ~5,000 rows, over 200 ms). A stored generated column computes it
once, when the post is written. SQLite is untouched (it searches its FTS5 table).
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("ALTER TABLE posts ADD COLUMN search_tsv tsvector "
               "GENERATED ALWAYS AS (to_tsvector('russian'::regconfig, coalesce(text, ''))) STORED")
    op.execute("DROP INDEX IF EXISTS ix_posts_fts_ru")
    op.execute("CREATE INDEX ix_posts_fts_tsv ON posts USING gin (search_tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP INDEX IF EXISTS ix_posts_fts_tsv")
    op.execute("ALTER TABLE posts DROP COLUMN IF EXISTS search_tsv")
    op.execute("CREATE INDEX ix_posts_fts_ru ON posts USING gin (to_tsvector('russian', text))")
