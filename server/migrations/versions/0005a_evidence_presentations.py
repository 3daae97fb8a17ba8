"""evidence: what each hearing (sub)room is being shown (presentation state shared by processes)

Revision ID: 0005a
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cases.models

revision: str = '0005a'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('evidence_presentations',
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('subroom', sa.String(length=40), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('presenter_label', sa.String(length=200), nullable=False),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('playing', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Double(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', cases.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_evidence_presentations_hearing_id_hearings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['evidence_items.id'], name=op.f('fk_evidence_presentations_item_id_evidence_items')),
    sa.PrimaryKeyConstraint('hearing_id', 'subroom', name=op.f('pk_evidence_presentations'))
    )


def downgrade() -> None:
    op.drop_table('evidence_presentations')
