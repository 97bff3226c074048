"""core_course_duplicate_course, _get_courses_by_field, _update_courses, _delete_courses."""

from __future__ import annotations

import copy
from typing import Any

from . import errors
from . import params as P
from .ctx import Ctx
from .model import SITEID, Course, Enrolment, now
from .views import course_record, warning

DUPLICATE_PARAMS = P.Single({
    "courseid": P.Value(P.INT),
    "fullname": P.Value(P.TEXT),
    "shortname": P.Value(P.TEXT),
    "categoryid": P.Value(P.INT),
    "visible": P.dflt(P.INT, 1),
    "options": P.Multiple(P.Single({"name": P.Value(P.ALPHAEXT), "value": P.Value(P.RAW)}), P.DEFAULT, []),
})
BACKUP_DEFAULTS = {"activities": 1, "blocks": 1, "filters": 1, "users": 0, "enrolments": 1, "role_assignments": 0,
                   "comments": 0, "userscompletion": 0, "logs": 0, "grade_histories": 0}

GET_BY_FIELD_PARAMS = P.Single({"field": P.dflt(P.ALPHA, ""), "value": P.dflt(P.RAW, "")})

UPDATE_PARAMS = P.Single({"courses": P.Multiple(P.Single({
    "id": P.Value(P.INT),
    "fullname": P.opt(P.TEXT),
    "shortname": P.opt(P.TEXT),
    "categoryid": P.opt(P.INT),
    "idnumber": P.opt(P.RAW),
    "summary": P.opt(P.RAW),
    "summaryformat": P.opt(P.INT),
    "format": P.opt(P.PLUGIN),
    "showgrades": P.opt(P.INT),
    "newsitems": P.opt(P.INT),
    "startdate": P.opt(P.INT),
    "enddate": P.opt(P.INT),
    "numsections": P.opt(P.INT),
    "maxbytes": P.opt(P.INT),
    "showreports": P.opt(P.INT),
    "visible": P.opt(P.INT),
    "hiddensections": P.opt(P.INT),
    "groupmode": P.opt(P.INT),
    "groupmodeforce": P.opt(P.INT),
    "defaultgroupingid": P.opt(P.INT),
    "enablecompletion": P.opt(P.INT),
    "completionnotify": P.opt(P.INT),
    "lang": P.opt(P.SAFEDIR),
    "forcetheme": P.opt(P.PLUGIN),
    "courseformatoptions": P.Multiple(P.Single({"name": P.Value(P.ALPHANUMEXT), "value": P.Value(P.RAW)}),
                                      P.OPTIONAL),
    "customfields": P.Multiple(P.Single({"shortname": P.Value(P.ALPHANUMEXT), "value": P.Value(P.RAW)}),
                               P.OPTIONAL),
    "showactivitydates": P.opt(P.BOOL),
    "showcompletionconditions": P.opt(P.BOOL),
}))})
_PLAIN_FIELDS = ("summary", "summaryformat", "format", "showgrades", "newsitems", "maxbytes", "showreports",
                 "visible", "hiddensections", "groupmode", "groupmodeforce", "defaultgroupingid", "enablecompletion",
                 "completionnotify", "lang")
_FORMAT_OPTIONS = ("hiddensections", "coursedisplay")

DELETE_PARAMS = P.Single({"courseids": P.Multiple(P.Value(P.INT))})


# ---- duplicate ------------------------------------------------------------------------------------------------
def duplicate_course(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Checks, then backup and restore run inside the request (as Moodle does, synchronously): the new course
    appears hidden, under its final names, halfway through, and gets its settings and visibility at the end."""
    st = ctx.state
    with st.lock:
        source = st.courses.get(p["courseid"])
        if source is None:
            raise errors.moodle("invalidcourseid", "error")
        if p["categoryid"] not in st.categories:
            raise errors.missing_record("course_categories", "SELECT id,parent FROM {course_categories} WHERE id = ?",
                                        [p["categoryid"]])
        options = dict(BACKUP_DEFAULTS)
        for option in p["options"]:
            value = P.php_intval(option["value"])
            if value not in (0, 1) or option["name"] not in BACKUP_DEFAULTS:
                raise errors.moodle("invalidextparam", "webservice", a=option["name"])
            options[option["name"]] = value
        taken = [c.fullname for c in st.courses.values() if c.shortname == p["shortname"]]
        if taken:
            raise errors.moodle("shortnametaken", a=",".join(taken))
        backup = copy.deepcopy(source)
    half = st.config.duplicate_seconds / 2
    if not ctx.pause(half):
        raise errors.moodle("dmlwriteexception", exception=errors.WRITE_EXCEPTION)  # stopped mid-backup
    with st.lock:
        if p["categoryid"] not in st.categories:
            raise errors.missing_record("course_categories", "SELECT * FROM {course_categories} WHERE id = ?",
                                        [p["categoryid"]])
        newid = st.next_id("course")
        # restore_dbops::create_new_course(): a hidden skeleton, no second shortname check
        st.courses[newid] = Course(newid, p["categoryid"], p["fullname"], p["shortname"], visible=0, restoring=True)
    if not ctx.pause(st.config.duplicate_seconds - half):
        return {"id": newid, "shortname": p["shortname"]}  # the server is going away; nobody reads this
    with st.lock:
        course = st.courses.get(newid)
        if course is None:  # deleted while restoring
            raise errors.missing_record("course", "SELECT * FROM {course} WHERE id = ?", [newid])
        _restore_into(st, course, backup, options)
        course.fullname, course.shortname, course.visible = p["fullname"], p["shortname"], p["visible"]
        return {"id": course.id, "shortname": course.shortname}


def _restore_into(st: Any, course: Course, backup: Course, options: dict[str, int]) -> None:
    keep = {"id": course.id, "category": course.category, "timecreated": course.timecreated}
    for key, value in vars(backup).items():
        if key not in keep and key not in ("enrolments", "restoring", "manual_enrol"):
            setattr(course, key, copy.deepcopy(value))
    if backup.idnumber and any(c.idnumber == backup.idnumber for c in st.courses.values() if c.id != course.id):
        course.idnumber = ""  # restore keeps an idnumber only when it is free
    course.manual_enrol = True
    course.restoring = False
    course.timemodified = course.cacherev = now()
    if options["users"]:
        for e in backup.enrolments.values():
            if st.live_user(e.userid):
                roles = list(e.roles) if options["role_assignments"] else []
                course.enrolments[e.userid] = Enrolment(e.userid, e.status, e.timestart, e.timeend, roles)


# ---- get ------------------------------------------------------------------------------------------------------
def get_courses_by_field(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    st = ctx.state
    field, value = p["field"], p["value"]
    warnings: list[dict[str, Any]] = []
    every = sorted(st.courses.values(), key=lambda c: c.id)
    if not field:
        found = every
    elif field in ("id", "category"):
        wanted = P.php_intval(value)
        found = [c for c in every if (c.id if field == "id" else c.category) == wanted]
    elif field == "shortname":
        wanted = P.clean(value, P.TEXT)
        found = [c for c in every if c.shortname == wanted]
    elif field == "idnumber":
        found = [c for c in every if c.idnumber == value]
    elif field == "ids":
        found = []
        ids = list(dict.fromkeys(P.clean(value, P.SEQUENCE).split(",")))
        for raw in ids:
            course = st.courses.get(P.php_intval(raw)) if raw else None
            if course is None:
                warnings.append(warning("course", P.php_intval(raw), "1", "No access rights in course context"))
            else:
                found.append(course)
    else:
        raise errors.invalid_parameter("Invalid field name")
    return {"courses": [course_record(st, c) for c in found], "warnings": warnings}


# ---- update ---------------------------------------------------------------------------------------------------
def update_courses(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Each course on its own: a failure becomes a warning with the exception's errorcode and message."""
    warnings = []
    for data in p["courses"]:
        try:
            _update_one(ctx, data)
        except errors.WsError as err:
            warnings.append(warning("course", data["id"], err.errorcode, err.message))
    return {"warnings": warnings}


def _update_one(ctx: Ctx, data: dict[str, Any]) -> None:
    st = ctx.state
    course = st.courses.get(data["id"])
    if course is None:  # context_course::instance($id, MUST_EXIST)
        raise errors.missing_record("course", "SELECT id,category FROM {course} WHERE id = ?", [data["id"]])
    for key in ("fullname", "shortname"):
        if key in data and data[key] != getattr(course, key) and not data[key].strip():
            raise errors.moodle("errorinvalidparam", "webservice", a=key)
    if "lang" in data and data["lang"] != course.lang and data["lang"] not in P.LANGS:
        raise errors.moodle("errorinvalidparam", "webservice", a="lang")
    # update_course()
    if data.get("shortname") and data["shortname"] != course.shortname:
        if any(c.shortname == data["shortname"] for c in st.courses.values() if c.id != course.id):
            raise errors.moodle("shortnametaken", a=data["shortname"])
    if data.get("idnumber") and data["idnumber"] != course.idnumber:
        if any(c.idnumber == data["idnumber"] for c in st.courses.values() if c.id != course.id):
            raise errors.moodle("courseidnumbertaken", a=data["idnumber"])
    if "categoryid" in data and data["categoryid"] != course.category and data["categoryid"] not in st.categories:
        raise errors.missing_record("course_categories", "SELECT * FROM {course_categories} WHERE id = ?",
                                    [data["categoryid"]])
    startdate = data.get("startdate", course.startdate)
    enddate = data.get("enddate", course.enddate)
    if enddate and enddate < startdate:
        raise errors.moodle("enddatebeforestartdate")
    for key in ("fullname", "shortname", "idnumber", *_PLAIN_FIELDS):
        if key in data:
            setattr(course, key, data[key])
    if "categoryid" in data:
        course.category = data["categoryid"]
    for key in ("showactivitydates", "showcompletionconditions"):
        if key in data:
            setattr(course, key, int(data[key]))
    course.startdate, course.enddate = startdate, enddate
    for option in data.get("courseformatoptions", []):
        if option["name"] in _FORMAT_OPTIONS:
            setattr(course, option["name"], P.php_intval(option["value"]))
    course.timemodified = course.cacherev = now()


# ---- delete ---------------------------------------------------------------------------------------------------
def delete_courses(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    st = ctx.state
    warnings = []
    for courseid in p["courseids"]:
        if courseid not in st.courses:
            warnings.append(warning("course", courseid, "unknowncourseidnumber", f"Unknown course ID {courseid}"))
        elif courseid == SITEID:  # delete_course() refuses the front page and returns false
            warnings.append(warning("course", courseid, "cannotdeletecategorycourse",
                                    f"Course {courseid} failed to be deleted"))
        else:
            del st.courses[courseid]
    return {"warnings": warnings}
