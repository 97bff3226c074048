"""proxmox inventory: nodes, templates, vms

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:51:42.437806
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cpu', sa.Float(), nullable=False),
    sa.Column('maxcpu', sa.Integer(), nullable=False),
    sa.Column('mem', sa.BigInteger(), nullable=False),
    sa.Column('maxmem', sa.BigInteger(), nullable=False),
    sa.Column('uptime', sa.BigInteger(), nullable=False),
    sa.Column('vms_running', sa.Integer(), nullable=False),
    sa.Column('vms_total', sa.Integer(), nullable=False),
    sa.Column('synced_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes')),
    sa.UniqueConstraint('name', name=op.f('uq_nodes_name'))
    )
    op.create_table('templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('pve_vmid', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('clone_mode', sa.String(length=8), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('maxmem', sa.BigInteger(), nullable=False),
    sa.Column('moodle_course_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_templates')),
    sa.UniqueConstraint('name', name=op.f('uq_templates_name'))
    )
    op.create_table('vms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('vmid', sa.Integer(), nullable=True),
    sa.Column('former_vmid', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('lock', sa.String(length=32), nullable=True),
    sa.Column('upid', sa.String(length=200), nullable=True),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.Column('updated_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.Column('missing_since', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=True),
    sa.ForeignKeyConstraint(['template_id'], ['templates.id'], name=op.f('fk_vms_template_id_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vms')),
    sa.UniqueConstraint('vmid', name=op.f('uq_vms_vmid'))
    )
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vms_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vms_participant_id'), ['participant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vms_participant_id'))
        batch_op.drop_index(batch_op.f('ix_vms_event_id'))

    op.drop_table('vms')
    op.drop_table('templates')
    op.drop_table('nodes')
