"""telegram_accounts, channel_accounts, channels.account, flood_waits.account: several Telegram accounts

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:00:00

One process may run several Telegram accounts (``[[telegram.accounts]]``, issue 16), and several processes
share one PostgreSQL. ``telegram_accounts`` is one row per account: its state (active, limited until
``retry_at``, banned, dead session), the process running it and its requests of the last hour.
``channel_accounts`` is what each account knows of each channel: whether it has joined it (learned from its
dialogs; a joined channel costs a share of one GetPeerDialogs instead of a GetHistory) and whether it can
read it at all (a private channel only its members can), and the channel's access hash as this account
knows it (Telegram gives every account its own). ``channels.account`` names the account reading the
channel now (``status``); ``flood_waits.account`` the account a flood wait was given to.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import monitor.models

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'telegram_accounts',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=128), nullable=True),
        sa.Column('user_id', sa.BigInteger(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('state_reason', sa.Text(), nullable=True),
        sa.Column('state_changed_at', monitor.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('retry_at', monitor.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('requests_per_minute', sa.Integer(), nullable=True),
        sa.Column('requests', sa.JSON(), nullable=False),
        sa.Column('seen_at', monitor.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_telegram_accounts')),
    )
    op.create_table(
        'channel_accounts',
        sa.Column('channel_id', sa.Integer(), nullable=False),
        sa.Column('account', sa.String(length=64), nullable=False),
        sa.Column('joined', sa.Boolean(), nullable=False),
        sa.Column('readable', sa.Boolean(), nullable=True),
        sa.Column('access_hash', sa.BigInteger(), nullable=True),
        sa.Column('checked_at', monitor.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_channel_accounts_channel_id_channels'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['account'], ['telegram_accounts.name'],
                                name=op.f('fk_channel_accounts_account_telegram_accounts'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('channel_id', 'account', name=op.f('pk_channel_accounts')),
    )
    with op.batch_alter_table('channel_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_channel_accounts_account'), ['account'], unique=False)
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account', sa.String(length=64), nullable=True))
    with op.batch_alter_table('flood_waits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('flood_waits', schema=None) as batch_op:
        batch_op.drop_column('account')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('account')
    with op.batch_alter_table('channel_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_channel_accounts_account'))
    op.drop_table('channel_accounts')
    op.drop_table('telegram_accounts')
