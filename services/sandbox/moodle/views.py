"""Record shapes as the functions return them after clean_returnvalue(): the keys of the return description,
in its order, optional ones left out when Moodle does not set them. The viewer is always the site admin."""

from __future__ import annotations

from typing import Any

from .model import CONTACT_ROLES, ROLES, SITEID, THEMEREV, Course, User, now
from .state import MoodleState

# user_get_default_fields(): what the `userfields` option of core_enrol_get_enrolled_users may name
USER_FIELDS = ("id", "username", "fullname", "firstname", "lastname", "email", "address", "phone1", "phone2",
               "department", "institution", "interests", "firstaccess", "lastaccess", "auth", "confirmed",
               "idnumber", "lang", "theme", "timezone", "mailformat", "trackforums", "description",
               "descriptionformat", "city", "url", "country", "profileimageurlsmall", "profileimageurl",
               "customfields", "groups", "roles", "preferences", "enrolledcourses", "suspended", "lastcourseaccess")

# core_user_external::user_description() order
_USER_ORDER = ("id", "username", "firstname", "lastname", "fullname", "email", "address", "phone1", "phone2",
               "department", "institution", "idnumber", "interests", "firstaccess", "lastaccess", "auth",
               "suspended", "confirmed", "lang", "theme", "timezone", "mailformat", "trackforums", "description",
               "descriptionformat", "city", "country", "profileimageurlsmall", "profileimageurl")
# core_enrol_external::get_enrolled_users_returns() order: no auth/lang/theme/... keys there
_ENROLLED_ORDER = ("id", "username", "firstname", "lastname", "fullname", "email", "address", "phone1", "phone2",
                   "department", "institution", "idnumber", "interests", "firstaccess", "lastaccess",
                   "lastcourseaccess", "description", "descriptionformat", "city", "country", "profileimageurlsmall",
                   "profileimageurl", "groups", "roles", "enrolledcourses")

FILTERS = ("activitynames", "displayh5p", "emoticon", "mathjaxloader", "mediaplugin")  # enabled by default


def profile_image(wwwroot: str, size: str) -> str:
    return f"{wwwroot}/theme/image.php/boost/core/{THEMEREV}/u/{size}"


def _user_fields(user: User, wwwroot: str) -> dict[str, Any]:
    """user_get_user_details() as an admin sees it, before the return description filters it."""
    d: dict[str, Any] = {
        "id": user.id, "username": user.username, "firstname": user.firstname, "lastname": user.lastname,
        "fullname": user.fullname, "email": user.email, "department": user.department,
        "firstaccess": user.firstaccess, "lastaccess": user.lastaccess, "auth": user.auth,
        "suspended": bool(user.suspended), "confirmed": bool(user.confirmed), "lang": user.lang,
        "theme": user.theme, "timezone": user.timezone, "mailformat": user.mailformat,
        "trackforums": user.trackforums,
        "profileimageurlsmall": profile_image(wwwroot, "f2"), "profileimageurl": profile_image(wwwroot, "f1"),
    }
    for key in ("address", "phone1", "phone2", "institution", "idnumber", "city", "country"):
        if getattr(user, key):
            d[key] = getattr(user, key)  # only non-empty ones are returned
    if user.description is not None:
        d["description"] = user.description
        d["descriptionformat"] = 1
    return d


def user_details(user: User, wwwroot: str) -> dict[str, Any]:
    d = _user_fields(user, wwwroot)
    return {k: d[k] for k in _USER_ORDER if k in d}


def enrolled_user(state: MoodleState, user: User, course: Course, wwwroot: str,
                  fields: list[str] | None = None) -> dict[str, Any]:
    d = _user_fields(user, wwwroot)
    enrolment = course.enrolments.get(user.id)
    d["lastcourseaccess"] = 0
    d["groups"] = []
    d["roles"] = [{"roleid": r, "name": "", "shortname": ROLES[r].shortname, "sortorder": ROLES[r].sortorder}
                  for r in sorted(enrolment.roles if enrolment else [], key=lambda r: ROLES[r].sortorder)]
    mine = [c for c in sorted(state.courses.values(), key=lambda c: c.id) if user.id in c.enrolments]
    if mine:
        d["enrolledcourses"] = [{"id": c.id, "fullname": c.fullname, "shortname": c.shortname} for c in mine]
    wanted = set(fields or USER_FIELDS) | {"id", "fullname"}
    return {k: d[k] for k in _ENROLLED_ORDER if k in d and k in wanted}


def course_record(state: MoodleState, course: Course) -> dict[str, Any]:
    """core_course_external::get_course_structure(false) for a manager."""
    category = state.categories.get(course.category)
    contacts = []
    for enrolment in sorted(course.enrolments.values(), key=lambda e: e.userid):
        user = state.live_user(enrolment.userid)
        if user and set(enrolment.roles) & set(CONTACT_ROLES) and enrolment.active(now()):
            contacts.append({"id": user.id, "fullname": user.fullname})
    record: dict[str, Any] = {
        "id": course.id, "fullname": course.fullname, "displayname": course.fullname,
        "shortname": course.shortname, "categoryid": course.category,
        "categoryname": category.name if category else "", "sortorder": 10000 + course.id,
        "summary": course.summary, "summaryformat": course.summaryformat, "summaryfiles": [], "overviewfiles": [],
        "showactivitydates": bool(course.showactivitydates),
        "showcompletionconditions": bool(course.showcompletionconditions),
        "contacts": contacts, "enrollmentmethods": ["manual"] if course.manual_enrol else [], "customfields": [],
        "idnumber": course.idnumber, "format": course.format, "showgrades": course.showgrades,
        "newsitems": course.newsitems, "startdate": course.startdate, "enddate": course.enddate,
        "maxbytes": course.maxbytes, "showreports": course.showreports, "visible": course.visible,
        "groupmode": course.groupmode, "groupmodeforce": course.groupmodeforce,
        "defaultgroupingid": course.defaultgroupingid, "enablecompletion": course.enablecompletion,
        "completionnotify": course.completionnotify, "lang": course.lang, "theme": course.theme,
        "marker": course.marker, "legacyfiles": course.legacyfiles, "calendartype": course.calendartype,
        "timecreated": course.timecreated, "timemodified": course.timemodified, "requested": course.requested,
        "cacherev": course.cacherev,
        "filters": [{"filter": f, "localstate": 0, "inheritedstate": 1} for f in FILTERS],
    }
    if course.id != SITEID:
        record["courseformatoptions"] = [{"name": "hiddensections", "value": course.hiddensections},
                                         {"name": "coursedisplay", "value": course.coursedisplay}]
    return record


def warning(item: str, itemid: int, code: str, message: str) -> dict[str, Any]:
    return {"item": item, "itemid": itemid, "warningcode": code, "message": message}
