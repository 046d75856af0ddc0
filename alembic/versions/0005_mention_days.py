"""mention_days: the stats rollup (posts per entity, channel and UTC day), filled from existing matches

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mention_days',
    sa.Column('entity_id', sa.String(length=128), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('posts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_mention_days_channel_id_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['entity_id'], ['entities.id'], name=op.f('fk_mention_days_entity_id_entities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('entity_id', 'channel_id', 'day', name=op.f('pk_mention_days'))
    )
    # Existing archives: count what is stored (the store keeps it in step from now on).
    day = "substr(p.date, 1, 10)" if op.get_bind().dialect.name == 'sqlite' else "(p.date AT TIME ZONE 'UTC')::date"
    op.execute(
        "INSERT INTO mention_days (entity_id, channel_id, day, posts) "
        f"SELECT m.entity_id, p.channel_id, {day}, count(DISTINCT m.post_id) "
        "FROM matches m JOIN posts p ON p.id = m.post_id WHERE m.version = p.version "
        f"GROUP BY m.entity_id, p.channel_id, {day}"
    )


def downgrade() -> None:
    op.drop_table('mention_days')
