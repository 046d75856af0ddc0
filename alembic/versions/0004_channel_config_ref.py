"""channels.config_ref: the [[channels]] entry a stored channel was resolved from (renames keep their row)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('config_ref', sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f('ix_channels_config_ref'), ['config_ref'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_channels_config_ref'))
        batch_op.drop_column('config_ref')
