"""users, emails, guacamole access on vms

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 20:53:59.937440
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('guacamole_password', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('emails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('body_text', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mariadb').with_variant(mysql.MEDIUMTEXT(), 'mysql'), nullable=False),
    sa.Column('body_html', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mariadb').with_variant(mysql.MEDIUMTEXT(), 'mysql'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.Column('sent_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_emails_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emails'))
    )
    with op.batch_alter_table('emails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emails_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_emails_status_sent_at', ['status', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_emails_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('guac_connection_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('guac_sharing_profile_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('access_link', sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f('ix_vms_user_id'), ['user_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_vms_user_id_users'), 'users', ['user_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_vms_user_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_vms_user_id'))
        batch_op.drop_column('access_link')
        batch_op.drop_column('guac_sharing_profile_id')
        batch_op.drop_column('guac_connection_id')
        batch_op.drop_column('user_id')

    with op.batch_alter_table('emails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emails_user_id'))
        batch_op.drop_index('ix_emails_status_sent_at')
        batch_op.drop_index(batch_op.f('ix_emails_event_id'))

    op.drop_table('emails')
    op.drop_table('users')
