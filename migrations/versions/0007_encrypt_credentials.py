"""participants' Guacamole passwords kept only encrypted (SECRET_KEY), stored emails without them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:30:00

Each users.guacamole_password becomes users.guacamole_password_encrypted (Fernet under SECRET_KEY,
openvle.credentials), and every stored email body that holds a user's password in clear gets the
placeholder instead: the password is put in only when the email is sent. SECRET_KEY is needed only
when there are passwords to encrypt. The downgrade decrypts them back.
"""

import html

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

PLACEHOLDER = "@@OPENVLE-GUACAMOLE-PASSWORD@@"  # openvle.guacamole_passwords.PLACEHOLDER at this revision

users = sa.table('users', sa.column('id', sa.Integer), sa.column('guacamole_password', sa.String),
                 sa.column('guacamole_password_encrypted', sa.String))
emails = sa.table('emails', sa.column('id', sa.Integer), sa.column('user_id', sa.Integer),
                  sa.column('body_text', sa.Text), sa.column('body_html', sa.Text))


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guacamole_password_encrypted', sa.String(length=255), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.guacamole_password)
                        .where(users.c.guacamole_password.is_not(None), users.c.guacamole_password != '')).all()
    if rows:
        from openvle import credentials  # only a database with passwords needs SECRET_KEY

        for user_id, password in rows:
            bind.execute(users.update().where(users.c.id == user_id)
                         .values(guacamole_password_encrypted=credentials.encrypt(password)))
            _scrub_emails(bind, user_id, password)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('guacamole_password')


def _scrub_emails(bind, user_id: int, password: str) -> None:
    """Every stored email to this user with the password in its body gets the placeholder instead."""
    found = bind.execute(sa.select(emails.c.id, emails.c.body_text, emails.c.body_html)
                         .where(emails.c.user_id == user_id)).all()
    for email_id, text, body_html in found:
        new_text = text.replace(password, PLACEHOLDER) if text else text
        new_html = body_html
        if body_html:
            new_html = body_html.replace(html.escape(password), PLACEHOLDER).replace(password, PLACEHOLDER)
        if (new_text, new_html) != (text, body_html):
            bind.execute(emails.update().where(emails.c.id == email_id)
                         .values(body_text=new_text, body_html=new_html))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guacamole_password', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.guacamole_password_encrypted)
                        .where(users.c.guacamole_password_encrypted.is_not(None))).all()
    if rows:
        from openvle import credentials

        for user_id, sealed in rows:
            bind.execute(users.update().where(users.c.id == user_id)
                         .values(guacamole_password=credentials.decrypt(sealed)))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('guacamole_password_encrypted')
