"""matches: the unique span key includes in_preview (a text and its link preview may both name an entity at
the same offset)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 15:40:00

With ``[matching] match_link_previews`` on, a post whose text and link preview both start with «Росатом»
has two matches (post, entity, start 0, version 1), one in the text and one in the preview: the old key
(post_id, entity_id, start, version) refused the second, so the whole batch failed and the channel's poll
failed the same way every cycle.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.drop_constraint('uq_matches_span', type_='unique')
        batch_op.create_unique_constraint('uq_matches_span', ['post_id', 'entity_id', 'start', 'version',
                                                              'in_preview'])


def downgrade() -> None:
    # (a database holding a text and a preview match at one offset cannot go back: the old key refuses it)
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.drop_constraint('uq_matches_span', type_='unique')
        batch_op.create_unique_constraint('uq_matches_span', ['post_id', 'entity_id', 'start', 'version'])
