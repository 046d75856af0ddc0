"""channels.baseline_at: when the channel's first poll set its baseline (edits made later alert)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 16:00:00

Posts at or below a channel's baseline (the newest post its first poll saw) never alert: they were there
before we watched. An edit of such a post that adds an entity is news, though, when it was made after we
started watching; the edit's time is compared with this column. Channels whose baseline was set before
this revision get the date of their stored baseline post (the watch began no earlier), else stay NULL
(their old posts' edits keep not alerting).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('channels', sa.Column('baseline_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE channels SET baseline_at = (SELECT posts.date FROM posts WHERE posts.channel_id = channels.id "
               "AND posts.message_id = channels.baseline_id) WHERE baseline_id IS NOT NULL")


def downgrade() -> None:
    op.drop_column('channels', 'baseline_at')
