"""destination_rates: one row per alert destination holding its sends of the last minute (rate limit)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 12:00:00

``[delivery] rate_limit_per_minute`` was enforced by counting the messages each process had sent in the last
minute before it started sending: two services draining one database each saw the same free allowance and
together sent twice the limit. A message now takes a slot in its destination's row first, with a conditional
UPDATE on ``version`` (compare-and-swap, atomic across processes on SQLite and PostgreSQL); ``sends`` holds
the database-clock times of the last minute's messages.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'destination_rates',
        sa.Column('destination', sa.String(length=128), nullable=False),
        sa.Column('sends', sa.JSON(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('destination', name=op.f('pk_destination_rates')),
    )


def downgrade() -> None:
    op.drop_table('destination_rates')
