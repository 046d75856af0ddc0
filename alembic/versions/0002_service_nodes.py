"""service nodes: heartbeats of running services, for sharing channel leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import monitor.models

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('service_nodes',
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=256), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', monitor.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', monitor.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner', name=op.f('pk_service_nodes'))
    )
    with op.batch_alter_table('service_nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_nodes_seen_at'), ['seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('service_nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_nodes_seen_at'))
    op.drop_table('service_nodes')
