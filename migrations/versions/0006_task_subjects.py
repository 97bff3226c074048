"""tasks know their event and VM; indexes for the API's keyset pages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:47:49.575165
"""

import re

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('vm_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_tasks_event_id_id', ['event_id', 'id'], unique=False)
        batch_op.create_index('ix_tasks_queue_id', ['queue', 'id'], unique=False)
        batch_op.create_index('ix_tasks_status_id', ['status', 'id'], unique=False)
        batch_op.create_index('ix_tasks_vm_id_id', ['vm_id', 'id'], unique=False)
    _backfill()


def _backfill() -> None:
    """Tasks made before this revision: their event and VM from params and target, as enqueue does now."""
    tasks = sa.table("tasks", sa.column("id", sa.Integer), sa.column("target", sa.String),
                     sa.column("params", sa.JSON), sa.column("event_id", sa.Integer), sa.column("vm_id", sa.Integer))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(sa.select(tasks.c.id, tasks.c.target, tasks.c.params).where(tasks.c.id > last)
                            .order_by(tasks.c.id).limit(2000)).all()
        if not rows:
            return
        last = rows[-1].id
        changes = []
        for row in rows:
            params = row.params if isinstance(row.params, dict) else {}
            target = row.target or ""
            event = params.get("event_id") or _number(r"^event:(\d+)", target)
            vm = params.get("vm_id") or _number(r"^vm:(\d+)", target)
            if event or vm:
                changes.append({"tid": row.id, "e": event if isinstance(event, int) else None,
                                "v": vm if isinstance(vm, int) else None})
        if changes:
            conn.execute(tasks.update().where(tasks.c.id == sa.bindparam("tid"))
                         .values(event_id=sa.bindparam("e"), vm_id=sa.bindparam("v")), changes)


def _number(pattern: str, text: str) -> int | None:
    match = re.match(pattern, text)
    return int(match[1]) if match else None


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_vm_id_id')
        batch_op.drop_index('ix_tasks_status_id')
        batch_op.drop_index('ix_tasks_queue_id')
        batch_op.drop_index('ix_tasks_event_id_id')
        batch_op.drop_column('vm_id')
        batch_op.drop_column('event_id')
