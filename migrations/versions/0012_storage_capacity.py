"""disk in the capacity check: each node's storages (node_storages) and a template's disk size and
storage (templates.maxdisk, templates.storage), all filled by node sync

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 13:45:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table('node_storages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('storage', sa.String(length=64), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('disk', sa.BigInteger(), nullable=False),
    sa.Column('maxdisk', sa.BigInteger(), nullable=False),
    sa.Column('synced_at', UtcDateTime, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_node_storages')),
    sa.UniqueConstraint('node', 'storage', name=op.f('uq_node_storages_node_storage'))
    )
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('maxdisk', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('storage', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('storage')
        batch_op.drop_column('maxdisk')
    op.drop_table('node_storages')
