"""What `make dev` starts with, so the README's examples work at once: a documented admin, a teacher
and two students (with these passwords, for development only), and a draft lab they share."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from openvle.db.engine import session_scope
from openvle.db.models import Event, User, utcnow

ACCOUNTS = (  # user name, role, password: documented in the README, never for production
    ("dev-admin", "admin", "dev-admin-pass"),
    ("dev-teacher", "teacher", "dev-teacher-pass"),
    ("dev-student1", "student", "dev-student1-pass"),
    ("dev-student2", "student", "dev-student2-pass"),
)
TEMPLATE = {"name": "dev-ubuntu", "pve_vmid": 9001, "node": "pve1", "clone_mode": "linked", "protocol": "rdp",
            "moodle_course_id": 2}  # the sandbox's shared-storage template and Moodle course
EVENT = "Dev Lab"


def seed() -> list[str]:
    """Make what is missing; returns lines saying what exists now."""
    from openvle.accounts.users import create_user
    from openvle.lab_events import create_event, create_template

    with session_scope() as session:
        existing = set(session.execute(select(User.username)).scalars())
        have_event = session.execute(select(Event.id).where(Event.name == EVENT)).first() is not None
    for name, role, password in ACCOUNTS:
        if name not in existing:
            create_user(name, f"{name}@openvle.test", role, first_name=name.split("-")[1].title(),
                        last_name="Dev", password=password)
    if not have_event:
        template_id = create_template(**TEMPLATE)
        start = (utcnow() + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        people = [{"username": n, "email": f"{n}@openvle.test"} for n, role, _ in ACCOUNTS if role == "student"]
        create_event(EVENT, template_id, start, start + dt.timedelta(hours=8), participants_=people,
                     teachers=[{"username": "dev-teacher", "email": "dev-teacher@openvle.test"}],
                     description="Made by `make dev`: deploy it as dev-teacher.", status="draft")
    return [f"{name} / {password} ({role})" for name, role, password in ACCOUNTS]
