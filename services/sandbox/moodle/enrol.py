"""enrol_manual_enrol_users, enrol_manual_unenrol_users, core_enrol_get_enrolled_users."""

from __future__ import annotations

from typing import Any

from . import errors
from . import params as P
from .ctx import Ctx
from .model import COURSE_ASSIGNABLE, GUEST_ID, SITEID, Enrolment, now
from .views import USER_FIELDS, enrolled_user

ENROL_PARAMS = P.Single({"enrolments": P.Multiple(P.Single({
    "roleid": P.Value(P.INT),
    "userid": P.Value(P.INT),
    "courseid": P.Value(P.INT),
    "timestart": P.opt(P.INT),
    "timeend": P.opt(P.INT),
    "suspend": P.opt(P.INT),
}))})
UNENROL_PARAMS = P.Single({"enrolments": P.Multiple(P.Single({
    "userid": P.Value(P.INT),
    "courseid": P.Value(P.INT),
    "roleid": P.opt(P.INT),  # declared, and ignored: unenrolling removes the user's roles in the course
}))})
ENROLLED_PARAMS = P.Single({
    "courseid": P.Value(P.INT),
    "options": P.Multiple(P.Single({"name": P.Value(P.ALPHANUMEXT), "value": P.Value(P.RAW)}), P.DEFAULT, []),
})


def enrol_users(ctx: Ctx, p: dict[str, Any]) -> None:
    st = ctx.state
    with st.transaction():
        for e in p["enrolments"]:
            course = st.courses.get(e["courseid"])
            if course is None:  # context_course::instance($id, IGNORE_MISSING), then validate_context(false)
                raise errors.invalid_parameter("Context does not exist")
            if e["roleid"] not in COURSE_ASSIGNABLE:
                raise errors.moodle("wsusercannotassign", "enrol_manual",
                                    a={"roleid": e["roleid"], "courseid": e["courseid"], "userid": e["userid"]})
            if not course.manual_enrol:
                # Moodle passes $errorparams as the link, not as $a: the placeholder stays in the message
                raise errors.moodle("wsnoinstance", "enrol_manual")
            timestart, timeend = e.get("timestart", 0), e.get("timeend", 0)
            status = 1 if e.get("suspend") else 0
            enrolment = course.enrolments.get(e["userid"])
            if enrolment is None:
                enrolment = course.enrolments[e["userid"]] = Enrolment(e["userid"], status, timestart, timeend)
            else:  # already enrolled: only changed dates or status are written
                enrolment.status, enrolment.timestart, enrolment.timeend = status, timestart, timeend
            # role_assign() checks the user only now, after the enrolment row was written (rolled back below)
            if st.live_user(e["userid"]) is None:
                raise errors.coding("User ID does not exist or is deleted!", f"userid:{e['userid']}")
            if e["roleid"] not in enrolment.roles:
                enrolment.roles.append(e["roleid"])
    return None


def unenrol_users(ctx: Ctx, p: dict[str, Any]) -> None:
    st = ctx.state
    with st.transaction():
        for e in p["enrolments"]:
            course = st.courses.get(e["courseid"])
            if course is None:  # context_course::instance($id) with MUST_EXIST
                raise errors.missing_record("course", "SELECT id,category FROM {course} WHERE id = ?", [e["courseid"]])
            if not course.manual_enrol:
                raise errors.moodle("wsnoinstance", "enrol_manual")
            if e["userid"] not in st.users:  # deleted users still have a record
                raise errors.invalid_parameter(f"User id not exist: {e['userid']}")
            course.enrolments.pop(e["userid"], None)  # not enrolled: nothing to do
    return None


def get_enrolled_users(ctx: Ctx, p: dict[str, Any]) -> list[dict[str, Any]]:
    st = ctx.state
    opts: dict[str, Any] = {"groupid": 0, "onlyactive": False, "onlysuspended": False, "userfields": None,
                            "limitfrom": 0, "limitnumber": 0, "sortby": "id", "sortdirection": "ASC"}
    for option in p["options"]:
        name, value = option["name"], option["value"]
        if name == "groupid":
            opts["groupid"] = P.php_intval(value)
        elif name in ("onlyactive", "onlysuspended"):
            opts[name] = value not in ("", "0")
        elif name == "userfields":
            opts["userfields"] = [P.clean(f, P.ALPHANUMEXT) for f in value.split(",")]
        elif name in ("limitfrom", "limitnumber"):
            opts[name] = P.php_intval(value)
        elif name == "sortby":
            if value not in ("id", "firstname", "lastname", "siteorder"):
                raise errors.invalid_parameter(f"Invalid value for sortby parameter (value: {value}), "
                                               "allowed values are: id,firstname,lastname,siteorder")
            opts["sortby"] = value
        elif name == "sortdirection":
            if value.upper() not in ("ASC", "DESC"):
                raise errors.invalid_parameter(f"Invalid value for sortdirection parameter\n                    "
                                               f"(value: {value.upper()}),allowed values are: ASC,DESC")
            opts["sortdirection"] = value.upper()
    course = st.courses.get(p["courseid"])
    if course is None:
        raise errors.missing_record("course", "SELECT * FROM {course} WHERE id = ?", [p["courseid"]])
    at = now()
    if course.id == SITEID:  # everybody but the guest is enrolled on the front page
        users = [u for u in st.users.values() if not u.deleted and u.id != GUEST_ID]
    else:
        users = []
        for enrolment in course.enrolments.values():
            user = st.live_user(enrolment.userid)
            if user is None:
                continue
            active = enrolment.active(at) and not user.suspended
            if (opts["onlyactive"] and not active) or (opts["onlysuspended"] and active):
                continue
            users.append(user)
    if opts["groupid"]:
        users = []  # no groups exist here
    key = {"id": lambda u: u.id, "firstname": lambda u: (u.firstname, u.id), "lastname": lambda u: (u.lastname, u.id),
           "siteorder": lambda u: (u.lastname, u.firstname, u.id)}[opts["sortby"]]
    users.sort(key=key, reverse=opts["sortdirection"] == "DESC")
    start = max(opts["limitfrom"], 0)
    users = users[start:start + opts["limitnumber"]] if opts["limitnumber"] > 0 else users[start:]
    for field in (opts["userfields"] or []) if users else []:  # checked per user by user_get_user_details()
        if field not in USER_FIELDS:
            raise errors.moodle("invaliduserfield", "error", a=field)
    return [enrolled_user(st, u, course, ctx.wwwroot, opts["userfields"]) for u in users]
