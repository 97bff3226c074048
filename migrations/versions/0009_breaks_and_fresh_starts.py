"""an event's break (suspend_at, resume_at, suspended_at); fresh starts of a VM (replaces_id,
replaced_by_id) and when a participant last asked for one (fresh_start_at)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 07:10:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suspend_at', UtcDateTime, nullable=True))
        batch_op.add_column(sa.Column('resume_at', UtcDateTime, nullable=True))
        batch_op.add_column(sa.Column('suspended_at', UtcDateTime, nullable=True))
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replaces_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('replaced_by_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fresh_start_at', UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('fresh_start_at')
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('replaced_by_id')
        batch_op.drop_column('replaces_id')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('suspended_at')
        batch_op.drop_column('resume_at')
        batch_op.drop_column('suspend_at')
