"""posts.arrival, posts.seen_at, posts.push_missed: how and when a post first reached us (issue 12)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00

``arrival`` is how the post was first stored (push, poll, backfill, import, web); ``seen_at`` is when we first
had it, so that alert latency (post date → alert sent) can be split into Telegram's part and ours;
``push_missed`` marks a post of a channel covered by push updates that only a (reconciling) poll delivered.
Old rows keep NULL / false: nobody knows how they arrived.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('posts', sa.Column('arrival', sa.String(length=16), nullable=True))
    op.add_column('posts', sa.Column('seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('posts', sa.Column('push_missed', sa.Boolean(), nullable=False, server_default=sa.false()))
    # "posts polling caught because push missed them" per channel: a partial index keeps the count cheap
    op.create_index('ix_posts_push_missed', 'posts', ['channel_id'], postgresql_where=sa.text('push_missed'),
                    sqlite_where=sa.text('push_missed'))


def downgrade() -> None:
    op.drop_index('ix_posts_push_missed', table_name='posts')
    # SQLite ≥ 3.35 and PostgreSQL both drop a plain column in place (no table copy: the FTS triggers stay)
    op.drop_column('posts', 'push_missed')
    op.drop_column('posts', 'seen_at')
    op.drop_column('posts', 'arrival')
