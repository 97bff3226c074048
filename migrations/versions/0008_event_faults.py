"""participants get the course link in their own email (course_email_id)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('course_email_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('course_email_id')
