"""Moodle courses (moodle queue): duplicate the template course, enrol people, archive.

Each job looks before it acts (the course by its short name, users by email, enrolments are
idempotent in Moodle), so a retry or a second run converges on the same course and enrolments.
"""

from __future__ import annotations

from sqlalchemy import select

from openvle.clients.moodle import ShortnameTaken, get_moodle
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import User
from openvle.errors import PermanentError
from openvle.settings import get_settings


def deploy_course(ctx: TaskContext, template_course_id: int, shortname: str, fullname: str,
                  category_id: int | None = None) -> dict:
    moodle = get_moodle()
    existing = moodle.course_by_shortname(shortname)
    if existing is not None:
        return {"course_id": int(existing["id"]), "url": moodle.course_url(int(existing["id"])), "created": False}
    ctx.progress(10, f"duplicating course {template_course_id} as {shortname} (slow on real Moodle)")
    try:
        created = moodle.call(
            "core_course_duplicate_course", courseid=template_course_id, fullname=fullname, shortname=shortname,
            categoryid=category_id or get_settings().MOODLE_CATEGORY_ID, visible=1,
            options=[{"name": "users", "value": 0}],  # the template's own people stay out of the copy
        )
        course_id = int(created["id"])
    except ShortnameTaken:  # an earlier attempt's duplication finished after all
        found = moodle.course_by_shortname(shortname)
        if found is None:
            raise
        course_id = int(found["id"])
    return {"course_id": course_id, "url": moodle.course_url(course_id), "created": True}


def _people(user_ids: list[int]) -> list[User]:
    with session_scope() as session:
        users = list(session.execute(select(User).where(User.id.in_(list(user_ids)))).scalars())
    missing = set(user_ids) - {u.id for u in users}
    if missing:
        raise PermanentError(f"users {sorted(missing)} do not exist")
    return users


def _moodle_ids(moodle, users: list[User]) -> dict[int, int]:
    """Our user id → Moodle user id, creating the Moodle accounts that do not exist (by email)."""
    if not users:
        return {}
    found = moodle.call("core_user_get_users_by_field", field="email", values=[u.email for u in users])
    by_email = {str(u["email"]).lower(): int(u["id"]) for u in found}
    missing = [u for u in users if u.email.lower() not in by_email]
    if missing:
        created = moodle.call("core_user_create_users", users=[
            # Moodle requires both names; people added by user name and email alone have no last name
            # (the first name already falls back to the user name when the account is made).
            {"username": u.username.lower(), "createpassword": 1, "firstname": u.first_name or u.username,
             "lastname": u.last_name or u.username, "email": u.email, "auth": "manual"} for u in missing
        ])
        by_username = {str(c["username"]): int(c["id"]) for c in created}
        for u in missing:
            by_email[u.email.lower()] = by_username[u.username.lower()]
    return {u.id: by_email[u.email.lower()] for u in users}


def enrol(ctx: TaskContext, course_id: int, student_ids: list[int] = (), teacher_ids: list[int] = ()) -> dict:
    settings = get_settings()
    moodle = get_moodle()
    students, teachers = _people(list(student_ids)), _people(list(teacher_ids))
    ids = _moodle_ids(moodle, students + teachers)
    enrolments = [{"roleid": settings.MOODLE_STUDENT_ROLE_ID, "userid": ids[u.id], "courseid": course_id}
                  for u in students]
    enrolments += [{"roleid": settings.MOODLE_TEACHER_ROLE_ID, "userid": ids[u.id], "courseid": course_id}
                   for u in teachers]
    if enrolments:
        moodle.call("enrol_manual_enrol_users", enrolments=enrolments)
    return {"course_id": course_id, "students": len(students), "teachers": len(teachers)}


def archive_course(ctx: TaskContext, course_id: int, user_ids: list[int] = (), action: str | None = None) -> dict:
    """Per MOODLE_ARCHIVE_ACTION: hide the course, delete it, or keep it and unenrol everyone."""
    action = action or get_settings().MOODLE_ARCHIVE_ACTION
    moodle = get_moodle()
    if action == "hide":
        moodle.call("core_course_update_courses", courses=[{"id": course_id, "visible": 0}])
    elif action == "delete":
        moodle.call("core_course_delete_courses", courseids=[course_id])  # gone already: a warning, fine
    elif action == "keep":
        users = _people(list(user_ids))
        found = moodle.call("core_user_get_users_by_field", field="email", values=[u.email for u in users]) \
            if users else []
        if found:
            moodle.call("enrol_manual_unenrol_users",
                        enrolments=[{"userid": int(u["id"]), "courseid": course_id} for u in found])
    else:
        raise PermanentError(f"unknown archive action {action!r}: use hide, delete or keep")
    return {"course_id": course_id, "action": action}
