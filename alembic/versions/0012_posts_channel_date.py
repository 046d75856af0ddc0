"""posts (channel_id, date) index: one channel's posts newest first without sorting them (dashboard feeds)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 15:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A channel-filtered feed walks one channel's posts by date; the (channel_id, message_id) unique index
    # gave them in message order, so every page sorted all of the channel's posts (150 ms for 50,000).
    op.create_index('ix_posts_channel_date', 'posts', ['channel_id', 'date'])


def downgrade() -> None:
    op.drop_index('ix_posts_channel_date', table_name='posts')
