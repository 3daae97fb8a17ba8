"""recording shares: recordings the organisation shared with a party of the case

Revision ID: 0009
Revises: 0005a
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cases.models

revision: str = '0009'
down_revision: str | None = '0005a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('recording_shares',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('party_id', sa.Integer(), nullable=False),
    sa.Column('shared_by_id', sa.Integer(), nullable=False),
    sa.Column('shared_at', cases.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', cases.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], name=op.f('fk_recording_shares_party_id_parties'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['recording_id'], ['recording_files.id'], name=op.f('fk_recording_shares_recording_id_recording_files'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['users.id'], name=op.f('fk_recording_shares_revoked_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['shared_by_id'], ['users.id'], name=op.f('fk_recording_shares_shared_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_shares'))
    )
    with op.batch_alter_table('recording_shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_shares_recording_id'), ['recording_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recording_shares_party_id'), ['party_id'], unique=False)


def downgrade() -> None:
    op.drop_table('recording_shares')
