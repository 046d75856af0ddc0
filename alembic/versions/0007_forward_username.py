"""posts.fwd_username: the username a forward's origin is known by (the web preview links t.me/<name>/<id>)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00

The web preview names a forward's origin channel by its public username and message id, never by its numeric
id, which is all ``fwd_channel_id`` can hold. Without the username, forwards seen through the web source had
no origin, so the alert de-duplication of forwards (one alert per story, "also in" the others) missed them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('posts', sa.Column('fwd_username', sa.String(length=64), nullable=True))


def downgrade() -> None:
    # SQLite ≥ 3.35 and PostgreSQL both drop a plain column in place (no table copy: the FTS triggers stay)
    op.drop_column('posts', 'fwd_username')
