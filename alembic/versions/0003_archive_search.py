"""archive search: lemmatised shadow text + FTS5 (SQLite), russian tsvector GIN index (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 02:00:00

SQLite: ``posts.search_lemmas`` holds each post's text with every word replaced by its lemma; the
external-content FTS5 table ``posts_fts`` indexes it (the store writes both in the batch's
transaction). Rows stored before this revision have ``search_lemmas IS NULL``; the partial index
``ix_posts_search_pending`` finds them fast and ``tgmonitor reindex`` (or the first search) fills them.

PostgreSQL: a GIN index over ``to_tsvector('russian', text)``; the column stays NULL there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_lemmas', sa.Text(), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute(
            "CREATE VIRTUAL TABLE posts_fts USING fts5(search_lemmas, content='posts', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute("CREATE INDEX ix_posts_search_pending ON posts (id) WHERE search_lemmas IS NULL")
    elif dialect == 'postgresql':
        op.execute("CREATE INDEX ix_posts_fts_ru ON posts USING gin (to_tsvector('russian', text))")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute("DROP INDEX IF EXISTS ix_posts_search_pending")
        op.execute("DROP TABLE IF EXISTS posts_fts")
    elif dialect == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_posts_fts_ru")
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_column('search_lemmas')
