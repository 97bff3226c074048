"""spread deploys: an event's deploy_mode, the batches of a spread deploy (deploy_batches), and the
batch that took each participant (participants.deploy_batch)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 12:45:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deploy_mode', sa.String(length=16), server_default='daily', nullable=False))
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deploy_batch', sa.Integer(), nullable=True))
    op.create_table('deploy_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('run_at', UtcDateTime, nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('clone_seconds', sa.Integer(), nullable=False),
    sa.Column('over_capacity', sa.Boolean(), nullable=False),
    sa.Column('requested_at', UtcDateTime, nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('done_at', UtcDateTime, nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_deploy_batches_event_id_events'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deploy_batches')),
    sa.UniqueConstraint('event_id', 'number', name=op.f('uq_deploy_batches_event_id_number'))
    )


def downgrade() -> None:
    op.drop_table('deploy_batches')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('deploy_batch')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('deploy_mode')
