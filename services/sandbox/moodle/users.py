"""core_user_create_users, core_user_get_users_by_field, core_user_delete_users."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from . import errors
from . import params as P
from .ctx import Ctx
from .model import ADMIN_ID, GUEST_ID, User, now
from .state import hash_password
from .views import user_details

_NAME_VALUE = P.Single({"type": P.Value(P.ALPHANUMEXT), "value": P.Value(P.RAW)})
CREATE_PARAMS = P.Single({"users": P.Multiple(P.Single({
    "createpassword": P.opt(P.BOOL),
    "username": P.Value(P.USERNAME),
    "auth": P.dflt(P.AUTH, "manual"),
    "password": P.opt(P.RAW),
    "firstname": P.Value(P.NOTAGS),
    "lastname": P.Value(P.NOTAGS),
    "email": P.Value(P.RAW_TRIMMED),
    "maildisplay": P.opt(P.INT),
    "city": P.opt(P.TEXT),
    "country": P.opt(P.ALPHA),
    "timezone": P.opt(P.TIMEZONE),
    "description": P.opt(P.RAW),
    "firstnamephonetic": P.opt(P.NOTAGS),
    "lastnamephonetic": P.opt(P.NOTAGS),
    "middlename": P.opt(P.NOTAGS),
    "alternatename": P.opt(P.NOTAGS),
    "interests": P.opt(P.TEXT),
    "idnumber": P.dflt(P.RAW, ""),
    "institution": P.opt(P.TEXT),
    "department": P.opt(P.TEXT),
    "phone1": P.opt(P.NOTAGS),
    "phone2": P.opt(P.NOTAGS),
    "address": P.opt(P.TEXT),
    "lang": P.dflt(P.LANG, "en"),
    "calendartype": P.dflt(P.PLUGIN, "gregorian"),
    "theme": P.opt(P.THEME),
    "mailformat": P.opt(P.INT),
    "customfields": P.Multiple(_NAME_VALUE, P.OPTIONAL),
    "preferences": P.Multiple(P.Single({"type": P.Value(P.RAW), "value": P.Value(P.RAW)}), P.OPTIONAL),
}))})
_COPIED = ("idnumber", "lang", "calendartype", "theme", "timezone", "city", "country", "description", "institution",
           "department", "phone1", "phone2", "address", "maildisplay", "mailformat")
CREATABLE_AUTHS = tuple(a for a in P.AUTH_PLUGINS if a not in ("mnet", "webservice"))
INTERNAL_AUTHS = ("email", "manual", "nologin", "none")
_EMAIL = re.compile(r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")

GET_BY_FIELD_PARAMS = P.Single({"field": P.Value(P.ALPHA), "values": P.Multiple(P.Value(P.RAW))})
_FIELD_TYPES = {"id": P.INT, "idnumber": P.RAW, "username": P.USERNAME, "email": P.RAW_TRIMMED}

DELETE_PARAMS = P.Single({"userids": P.Multiple(P.Value(P.INT))})


def password_policy_errors(password: str) -> list[str]:
    """get_password_policy_errors() with the defaults: 8 characters, 1 digit, 1 lower, 1 upper, 1 other."""
    out = []
    if len(password) < 8:
        out.append("Passwords must be at least 8 characters long.")
    if sum(c.isdigit() for c in password) < 1:
        out.append("Passwords must have at least 1 digit(s).")
    if sum(c.islower() for c in password) < 1:
        out.append("Passwords must have at least 1 lower case letter(s).")
    if sum(c.isupper() for c in password) < 1:
        out.append("Passwords must have at least 1 upper case letter(s).")
    if sum(not (c.isdigit() or c.islower() or c.isupper()) for c in password) < 1:
        out.append("Passwords must have at least 1 non-alphanumeric character(s) such as as *, -, or #.")
    return out


def create_users(ctx: Ctx, p: dict[str, Any]) -> list[dict[str, Any]]:
    st = ctx.state
    created = []
    with st.transaction():
        for data in p["users"]:
            for key in ("username", "firstname", "lastname"):
                if data[key].strip(" \t\n\r\0\x0b") == "":
                    raise errors.invalid_parameter(f"The field {key} cannot be blank")
            if st.user_by_username(data["username"]) is not None:
                raise errors.invalid_parameter(f"Username already exists: {data['username']}")
            if data["auth"] not in CREATABLE_AUTHS:
                raise errors.invalid_parameter(f"Invalid authentication type: {data['auth']}")
            internal = data["auth"] in INTERNAL_AUTHS
            if internal and not data.get("password") and not data.get("createpassword"):
                raise errors.invalid_parameter("Invalid password: you must provide a password, or set createpassword.")
            email = data["email"]
            if not _EMAIL.match(email) or re.search(r"[<>]", email):
                raise errors.invalid_parameter(f"Email address is invalid: {email}")
            if any(u.email.lower() == email.lower() for u in st.users.values()):
                raise errors.invalid_parameter(f"Email address already exists: {email}")
            password = ""
            if internal and not data.get("createpassword"):
                problems = password_policy_errors(data["password"]) if st.config.password_policy else []
                if problems:  # user_create_user() throws moodle_exception($errmsg): the HTML is the errorcode
                    raise errors.moodle("".join(f"<div>{x}</div>" for x in problems))
                password = hash_password(data["password"])
            user = User(st.next_id("user"), data["username"], data["firstname"], data["lastname"], email,
                        auth=data["auth"], password=password)
            for key in _COPIED:
                if key in data:
                    setattr(user, key, data[key])
            st.users[user.id] = user
            created.append({"id": user.id, "username": user.username})
    return created


def get_users_by_field(ctx: Ctx, p: dict[str, Any]) -> list[dict[str, Any]]:
    field = p["field"]
    if field not in _FIELD_TYPES:
        raise errors.coding("invalid field parameter",
                            f"The search field '{field}' is not supported, look at the web service documentation")
    wanted = []
    for value in p["values"]:
        cleaned = P.clean(value, _FIELD_TYPES[field])
        if not _loose_equal(value, cleaned):
            raise errors.invalid_parameter(f"The field '{field}' value is invalid: {value}(cleaned value: {cleaned})")
        wanted.append(cleaned)
    found = sorted((u for u in ctx.state.users.values() if getattr(u, field) in wanted and not u.deleted),
                   key=lambda u: u.id)
    return [user_details(u, ctx.wwwroot) for u in found if getattr(u, field)]


def _loose_equal(raw: str, cleaned: Any) -> bool:
    """PHP 8's `==` between the submitted string and the cleaned value."""
    if isinstance(cleaned, int):
        try:
            return float(raw.strip(" \t\n\r\v\f")) == cleaned
        except ValueError:
            return False
    return raw == cleaned


def delete_users(ctx: Ctx, p: dict[str, Any]) -> None:
    st = ctx.state
    with st.transaction():
        for userid in p["userids"]:
            user = st.live_user(userid)
            if user is None:
                raise errors.missing_record("user", "SELECT * FROM {user} WHERE id = ? AND deleted = ?", [userid, 0])
            if user.id == ADMIN_ID:
                raise errors.moodle("useradminodelete", "error")
            if user.id == GUEST_ID:
                continue  # delete_user() refuses the guest account quietly (a debugging() notice, no exception)
            _delete(st, user)
    return None


def _delete(st: Any, user: User) -> None:
    """delete_user(): unenrol everywhere, then free the username and email by rewriting them."""
    for course in st.courses.values():
        course.enrolments.pop(user.id, None)
    stamp = now()
    delname = P.clean(f"{user.email}.{stamp}", P.USERNAME)
    while st.user_by_username(delname) is not None:
        stamp += 1
        delname = P.clean(f"{user.email}.{stamp}", P.USERNAME)
    user.email = hashlib.md5(user.username.encode()).hexdigest()
    user.username = delname
    user.idnumber = ""
    user.password = ""
    user.deleted = 1
    user.timemodified = now()
