"""recording: a hearing's recording state and the archive of recorded files

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cases.models

revision: str = '0008'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('hearings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_since', cases.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table('recording_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('participant_name', sa.String(length=200), nullable=False),
    sa.Column('subroom', sa.String(length=40), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('media_type', sa.String(length=60), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('started_at', cases.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', cases.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('legal_hold', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', cases.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_recording_files_case_id_cases'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_recording_files_hearing_id_hearings'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_files')),
    sa.UniqueConstraint('path', name=op.f('uq_recording_files_path'))
    )
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_files_hearing_id'), ['hearing_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recording_files_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recording_files_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_table('recording_files')
    with op.batch_alter_table('hearings', schema=None) as batch_op:
        batch_op.drop_column('recording_since')
