"""The Moodle web services simulator, exercised over real HTTP with parameters encoded the PHP way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import WAIT_SCALE, wait_for
from sandbox.moodle import MoodleSimulator, MoodleState

TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
DUPLICATE_SECONDS = 0.3
SERVICE = {
    "core_webservice_get_site_info", "core_course_duplicate_course", "core_course_get_courses_by_field",
    "core_course_update_courses", "core_course_delete_courses", "core_user_create_users",
    "core_user_get_users_by_field", "core_user_delete_users", "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users", "core_enrol_get_enrolled_users",
}
PASSWORD = "Lab-pass-2024"


@pytest.fixture(scope="module")
def sim() -> Iterator[MoodleSimulator]:
    simulator = MoodleSimulator(token=TOKEN, duplicate_seconds=DUPLICATE_SECONDS, fault_seed=7)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def http(sim: MoodleSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def site(sim: MoodleSimulator) -> MoodleState:
    sim.state.reset()
    sim.state.seed()
    return sim.state


def php_encode(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts/lists as PHP form fields: users[0][username]=..., courseids[0]=5."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))
    else:
        return [(prefix, str(value))]
    out: list[tuple[str, str]] = []
    for key, item in items:
        out += php_encode(item, f"{prefix}[{key}]" if prefix else str(key))
    return out


def raw_call(http: httpx.Client, function: str | None, params: dict[str, Any] | None = None, *,
             token: str | None = TOKEN, fmt: str | None = "json", method: str = "POST") -> httpx.Response:
    fields: dict[str, Any] = {}
    if token is not None:
        fields["wstoken"] = token
    if function is not None:
        fields["wsfunction"] = function
    if fmt is not None:
        fields["moodlewsrestformat"] = fmt
    fields.update(params or {})
    encoded = php_encode(fields)
    if method == "GET":
        return http.get("/webservice/rest/server.php", params=encoded)
    return http.post("/webservice/rest/server.php", data=dict(encoded))


def ws(http: httpx.Client, function: str, **params: Any) -> Any:
    resp = raw_call(http, function, params)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def ws_error(http: httpx.Client, function: str, **params: Any) -> dict[str, Any]:
    body = ws(http, function, **params)
    assert isinstance(body, dict) and "errorcode" in body, body
    return body


def new_user(username: str, **extra: Any) -> dict[str, Any]:
    return {"username": username, "firstname": username.title(), "lastname": "Tester",
            "email": f"{username}@example.org", "password": PASSWORD, **extra}


def admin(http: httpx.Client, method: str, path: str, json: Any = None) -> httpx.Response:
    return http.request(method, f"/_sandbox/{path}", json=json)


# ---- protocol: token, function lookup, service, order ------------------------------------------------------------
def test_site_info(http, sim):
    resp = raw_call(http, "core_webservice_get_site_info")
    assert resp.headers["content-type"] == "application/json"
    assert '"siteurl":"http:\\/\\/' in resp.text  # json_encode() escapes slashes
    info = resp.json()
    assert info["userid"] == 2 and info["username"] == "admin" and info["siteid"] == 1
    assert info["release"].startswith("4.5") and info["version"] == "2024100700"
    assert info["siteurl"] == sim.url and info["userissiteadmin"] is True
    assert {f["name"] for f in info["functions"]} == SERVICE


def test_bad_or_missing_token_is_invalidtoken(http):
    for token in ("wrong", None):
        resp = raw_call(http, "core_webservice_get_site_info", token=token)
        assert resp.status_code == 200
        assert resp.json() == {"exception": "core\\exception\\moodle_exception", "errorcode": "invalidtoken",
                               "message": "Invalid token - token not found"}


def test_function_outside_the_service_is_accessexception(http):
    err = ws_error(http, "core_course_create_courses")
    assert err["exception"] == "webservice_access_exception"
    assert err["errorcode"] == "accessexception" and err["message"] == "Access control exception"
    assert err["debuginfo"].startswith("Access to the function core_course_create_courses() is not allowed.\n")
    assert "1. The service linked to the user token does not contain the function." in err["debuginfo"]


def test_unknown_function_is_invalidrecord(http):
    err = ws_error(http, "local_nothing_here")
    assert err == {"exception": "dml_missing_record_exception", "errorcode": "invalidrecord",
                   "message": "Can not find data record in database table external_functions.",
                   "debuginfo": "SELECT * FROM {external_functions} WHERE name = ?\n"
                                "[array (\n  0 => 'local_nothing_here',\n)]"}
    missing = ws_error(http, "")
    assert missing["errorcode"] == "invalidparameter" and missing["debuginfo"] == "Missing function name"


def test_check_order_token_function_service_parameters(http):
    junk = {"junk": "1"}
    assert raw_call(http, "local_nothing_here", junk, token="bad").json()["errorcode"] == "invalidtoken"
    assert ws_error(http, "local_nothing_here", **junk)["errorcode"] == "invalidrecord"
    assert ws_error(http, "core_course_create_courses", **junk)["errorcode"] == "accessexception"
    assert ws_error(http, "core_webservice_get_site_info", **junk)["errorcode"] == "invalidparameter"


def test_xml_is_the_default_format(http):
    resp = raw_call(http, "core_webservice_get_site_info", fmt=None)
    assert resp.headers["content-type"] == "application/xml; charset=utf-8"
    assert resp.text.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n<SINGLE>\n')
    assert '<KEY name="userid"><VALUE>2</VALUE>\n</KEY>' in resp.text
    err = raw_call(http, "core_webservice_get_site_info", token="bad", fmt="yaml")  # unknown format: xml
    assert '<EXCEPTION class="core\\exception\\moodle_exception">\n<ERRORCODE>invalidtoken</ERRORCODE>' in err.text
    none = raw_call(http, "enrol_manual_unenrol_users", {"enrolments": [{"userid": 2, "courseid": 2}]}, fmt="xml")
    assert none.text == '<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n</RESPONSE>\n'


def test_get_and_post_and_php_array_forms_are_equivalent(http):
    by_get = raw_call(http, "core_course_get_courses_by_field", {"field": "id", "value": "2"}, method="GET").json()
    by_post = ws(http, "core_course_get_courses_by_field", field="id", value="2")
    assert by_get == by_post and by_get["courses"][0]["shortname"] == "vle-template"
    # percent-encoded brackets and `[]` appends are PHP arrays too
    body = (f"wstoken={TOKEN}&wsfunction=core_course_delete_courses&moodlewsrestformat=json"
            "&courseids%5B%5D=77&courseids[]=78")
    resp = http.post("/webservice/rest/server.php", content=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert [w["itemid"] for w in resp.json()["warnings"]] == [77, 78]


# ---- strict parameter validation ----------------------------------------------------------------------------------
def test_unexpected_and_missing_keys(http):
    top = ws_error(http, "core_course_delete_courses", courseids=[5], extra="x", other="y")
    assert top["exception"] == "core\\exception\\invalid_parameter_exception"
    assert top["message"] == "Invalid parameter value detected"
    assert top["debuginfo"] == "Unexpected keys (extra, other) detected in parameter array."
    nested = ws_error(http, "core_user_create_users", users=[{**new_user("ann"), "nickname": "a"}])
    assert nested["debuginfo"] == ("users => Invalid parameter value detected: "
                                   "Unexpected keys (nickname) detected in parameter array.")
    missing = ws_error(http, "core_user_create_users", users=[{"username": "ann", "firstname": "A", "lastname": "B"}])
    assert missing["debuginfo"] == ("users => Invalid parameter value detected: "
                                    "Missing required key in single structure: email")
    top_missing = ws_error(http, "core_course_delete_courses")  # an empty list cannot be sent in PHP form encoding
    assert top_missing["debuginfo"] == "Missing required key in single structure: courseids"


def test_scalars_must_survive_cleaning(http):
    as_float = ws_error(http, "core_course_delete_courses", courseids=["5.0"])
    assert as_float["debuginfo"] == ('courseids => Invalid parameter value detected: Invalid external api parameter: '
                                     'the value is "5.0", the server was expecting "int" type')
    as_word = ws_error(http, "core_course_update_courses", courses=[{"id": 2, "showactivitydates": "true"}])
    assert as_word["errorcode"] == "invalidparameter"
    assert 'the value is "true", the server was expecting "bool" type' in as_word["debuginfo"]
    assert ws(http, "core_course_update_courses", courses=[{"id": 2, "showactivitydates": "0"}]) == {"warnings": []}
    scalar = ws_error(http, "core_course_delete_courses", courseids="5")
    assert scalar["debuginfo"] == ("courseids => Invalid parameter value detected: "
                                   "Only arrays accepted. The bad value is: '5'")


# ---- courses ------------------------------------------------------------------------------------------------------
def test_duplicate_course_is_slow_and_synchronous(http, site):
    start = time.monotonic()
    result = ws(http, "core_course_duplicate_course", courseid=2, fullname="Lab: networks", shortname="lab-net",
                categoryid=2, visible=0, options=[{"name": "users", "value": 0}, {"name": "blocks", "value": 1}])
    assert time.monotonic() - start >= DUPLICATE_SECONDS
    assert set(result) == {"id", "shortname"} and result["shortname"] == "lab-net"
    course = ws(http, "core_course_get_courses_by_field", field="id", value=result["id"])["courses"][0]
    assert (course["fullname"], course["categoryid"], course["visible"], course["format"]) == (
        "Lab: networks", 2, 0, "topics")
    assert not next(c for c in site.snapshot()["courses"] if c["id"] == result["id"])["restoring"]


def test_duplicate_course_errors(http):
    taken = ws_error(http, "core_course_duplicate_course", courseid=2, fullname="X", shortname="vle-template",
                     categoryid=1)
    assert taken["errorcode"] == "shortnametaken"
    assert taken["message"] == "Short name is already used for another course (VLE lab template)"
    assert ws_error(http, "core_course_duplicate_course", courseid=999, fullname="X", shortname="x",
                    categoryid=1)["message"] == "You are trying to use an invalid course ID"
    no_category = ws_error(http, "core_course_duplicate_course", courseid=2, fullname="X", shortname="x", categoryid=9)
    assert no_category["errorcode"] == "invalidrecord"
    assert no_category["message"] == "Can not find data record in database table course_categories."
    bad_option = ws_error(http, "core_course_duplicate_course", courseid=2, fullname="X", shortname="x", categoryid=1,
                          options=[{"name": "everything", "value": 1}])
    assert (bad_option["errorcode"], bad_option["message"]) == (
        "invalidextparam", "Invalid external api parameter: everything")


def test_duplicate_course_in_flight(http, sim, site):
    site.configure(duplicate_seconds=4)  # the restore half (2 s) is the window the checks below run in
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(ws(
        http, "core_course_duplicate_course", courseid=2, fullname="Lab A", shortname="lab-a", categoryid=2)))
    worker.start()
    # Past the backup half, the hidden skeleton exists under its final names.
    skeleton = wait_for(lambda: [c for c in site.snapshot()["courses"] if c["shortname"] == "lab-a"], 10,
                        "the restore to begin")
    assert skeleton[0]["restoring"] and skeleton[0]["visible"] == 0
    again = ws_error(http, "core_course_duplicate_course", courseid=2, fullname="Lab A", shortname="lab-a",
                     categoryid=2)
    assert again["errorcode"] == "shortnametaken"
    worker.join(timeout=10)
    assert results[0]["id"] == skeleton[0]["id"]
    course = next(c for c in site.snapshot()["courses"] if c["id"] == results[0]["id"])
    assert course["visible"] == 1 and not course["restoring"]


def test_duplicate_course_with_users_copies_enrolments(http, site):
    site.configure(duplicate_seconds=0.05)
    uid = site.add_user("tina")
    site.enrol(uid, 2, 3)
    plain = ws(http, "core_course_duplicate_course", courseid=2, fullname="P", shortname="p", categoryid=1)
    full = ws(http, "core_course_duplicate_course", courseid=2, fullname="F", shortname="f", categoryid=1,
              options=[{"name": "users", "value": 1}, {"name": "role_assignments", "value": 1}])
    assert ws(http, "core_enrol_get_enrolled_users", courseid=plain["id"]) == []
    [tina] = ws(http, "core_enrol_get_enrolled_users", courseid=full["id"])
    assert [r["shortname"] for r in tina["roles"]] == ["editingteacher"]


def test_get_courses_by_field(http, site):
    site.add_course("Other", "other", 2, idnumber="OTH-1")
    assert [c["id"] for c in ws(http, "core_course_get_courses_by_field")["courses"]] == [1, 2, 3]
    assert [c["id"] for c in ws(http, "core_course_get_courses_by_field", field="shortname",
                                value="other")["courses"]] == [3]
    assert [c["id"] for c in ws(http, "core_course_get_courses_by_field", field="category",
                                value=2)["courses"]] == [3]
    assert [c["id"] for c in ws(http, "core_course_get_courses_by_field", field="idnumber",
                                value="OTH-1")["courses"]] == [3]
    ids = ws(http, "core_course_get_courses_by_field", field="ids", value="3,99,2")
    assert [c["id"] for c in ids["courses"]] == [3, 2]
    assert ids["warnings"] == [{"item": "course", "itemid": 99, "warningcode": "1",
                                "message": "No access rights in course context"}]
    assert ws(http, "core_course_get_courses_by_field", field="shortname", value="nope") == {
        "courses": [], "warnings": []}
    bad = ws_error(http, "core_course_get_courses_by_field", field="name", value="x")
    assert bad["errorcode"] == "invalidparameter" and bad["debuginfo"] == "Invalid field name"


def test_update_courses_hides_and_warns(http):
    result = ws(http, "core_course_update_courses", courses=[
        {"id": 2, "visible": 0},
        {"id": 404, "visible": 0},
        {"id": 1, "shortname": "vle-template"},
        {"id": 2, "fullname": "  "},
    ])
    assert result["warnings"] == [
        {"item": "course", "itemid": 404, "warningcode": "invalidrecord",
         "message": "Can not find data record in database table course."},
        {"item": "course", "itemid": 1, "warningcode": "shortnametaken",
         "message": "Short name is already used for another course (vle-template)"},
        {"item": "course", "itemid": 2, "warningcode": "errorinvalidparam",
         "message": 'The param "fullname" is invalid.'},
    ]
    course = ws(http, "core_course_get_courses_by_field", field="id", value=2)["courses"][0]
    assert course["visible"] == 0 and course["fullname"] == "VLE lab template"


def test_delete_courses_unknown_ids_are_warnings(http, site):
    result = ws(http, "core_course_delete_courses", courseids=[2, 99, 1])
    assert result == {"warnings": [
        {"item": "course", "itemid": 99, "warningcode": "unknowncourseidnumber", "message": "Unknown course ID 99"},
        {"item": "course", "itemid": 1, "warningcode": "cannotdeletecategorycourse",
         "message": "Course 1 failed to be deleted"},
    ]}
    assert [c["id"] for c in site.snapshot()["courses"]] == [1]


# ---- users --------------------------------------------------------------------------------------------------------
def test_create_users(http, site):
    created = ws(http, "core_user_create_users", users=[new_user("alice"), new_user("bob", idnumber="S-2")])
    assert created == [{"id": 3, "username": "alice"}, {"id": 4, "username": "bob"}]
    snapshot = {u["username"]: u for u in site.snapshot()["users"]}
    assert set(snapshot) == {"guest", "admin", "alice", "bob"}
    assert snapshot["bob"]["idnumber"] == "S-2" and snapshot["bob"]["has_password"]


def test_create_users_rejections(http):
    ws(http, "core_user_create_users", users=[new_user("alice")])
    dup = ws_error(http, "core_user_create_users", users=[new_user("alice", email="other@example.org")])
    assert (dup["errorcode"], dup["debuginfo"]) == ("invalidparameter", "Username already exists: alice")
    email = ws_error(http, "core_user_create_users", users=[new_user("alice2", email="ALICE@example.org")])
    assert email["debuginfo"] == "Email address already exists: ALICE@example.org"
    upper = ws_error(http, "core_user_create_users", users=[new_user("Alice3")])
    assert upper["debuginfo"] == ("users => Invalid parameter value detected: username => Invalid parameter value "
                                  'detected: Invalid external api parameter: the value is "Alice3", the server was '
                                  'expecting "username" type')
    blank = ws_error(http, "core_user_create_users", users=[new_user("dan", firstname=" ")])
    assert blank["debuginfo"] == "The field firstname cannot be blank"
    nopass = {k: v for k, v in new_user("erin").items() if k != "password"}
    assert ws_error(http, "core_user_create_users", users=[nopass])["debuginfo"] == (
        "Invalid password: you must provide a password, or set createpassword.")
    assert ws(http, "core_user_create_users", users=[{**nopass, "createpassword": 1}])[0]["username"] == "erin"
    weak = ws_error(http, "core_user_create_users", users=[new_user("fred", password="secret")])
    assert weak["errorcode"].startswith("<div>Passwords must be at least 8 characters long.</div>")
    assert weak["message"] == "error/" + weak["errorcode"]


def test_create_users_is_all_or_nothing(http, site):
    failed = ws_error(http, "core_user_create_users", users=[new_user("gina"), new_user("gina")])
    assert failed["debuginfo"] == "Username already exists: gina"
    assert "gina" not in {u["username"] for u in site.snapshot()["users"]}
    # like a database sequence, the rolled-back insert used up its id
    assert ws(http, "core_user_create_users", users=[new_user("gina")]) == [{"id": 4, "username": "gina"}]


def test_get_users_by_field(http):
    ws(http, "core_user_create_users", users=[new_user("alice", idnumber="S-1"), new_user("bob")])
    [alice] = ws(http, "core_user_get_users_by_field", field="username", values=["alice"])
    assert (alice["id"], alice["email"], alice["fullname"], alice["idnumber"]) == (3, "alice@example.org",
                                                                                  "Alice Tester", "S-1")
    assert alice["auth"] == "manual" and alice["suspended"] is False and alice["confirmed"] is True
    assert [u["username"] for u in ws(http, "core_user_get_users_by_field", field="id", values=[4, 3, 99])] == [
        "alice", "bob"]
    assert [u["id"] for u in ws(http, "core_user_get_users_by_field", field="email",
                                values=["bob@example.org"])] == [4]
    assert [u["id"] for u in ws(http, "core_user_get_users_by_field", field="idnumber", values=["S-1"])] == [3]
    assert ws(http, "core_user_get_users_by_field", field="username", values=["nobody"]) == []
    bad = ws_error(http, "core_user_get_users_by_field", field="lastname", values=["Tester"])
    assert bad == {"exception": "core\\exception\\coding_exception", "errorcode": "codingerror",
                   "message": "Coding error detected, it must be fixed by a programmer: invalid field parameter",
                   "debuginfo": "The search field 'lastname' is not supported, look at the web service documentation"}
    upper = ws_error(http, "core_user_get_users_by_field", field="username", values=["Alice"])
    assert upper["debuginfo"] == "The field 'username' value is invalid: Alice(cleaned value: alice)"


def test_delete_users(http):
    [alice] = ws(http, "core_user_create_users", users=[new_user("alice")])
    assert ws(http, "core_user_delete_users", userids=[alice["id"]]) is None
    assert ws(http, "core_user_get_users_by_field", field="id", values=[alice["id"]]) == []
    gone = ws_error(http, "core_user_delete_users", userids=[alice["id"]])
    assert (gone["exception"], gone["errorcode"], gone["message"]) == (
        "dml_missing_record_exception", "invaliduser", "Invalid user")
    assert ws_error(http, "core_user_delete_users", userids=[2])["message"] == (
        "Administrator accounts can not be deleted")
    assert ws(http, "core_user_create_users", users=[new_user("alice")])[0]["id"] == alice["id"] + 1  # name freed


# ---- enrolments ---------------------------------------------------------------------------------------------------
def test_enrol_is_idempotent_and_lists_roles(http, site):
    [u] = ws(http, "core_user_create_users", users=[new_user("sam")])
    enrolment = {"roleid": 5, "userid": u["id"], "courseid": 2}
    assert ws(http, "enrol_manual_enrol_users", enrolments=[enrolment]) is None
    assert ws(http, "enrol_manual_enrol_users", enrolments=[enrolment]) is None
    [listed] = ws(http, "core_enrol_get_enrolled_users", courseid=2)
    assert listed["roles"] == [{"roleid": 5, "name": "", "shortname": "student", "sortorder": 5}]
    assert listed["enrolledcourses"] == [{"id": 2, "fullname": "VLE lab template", "shortname": "vle-template"}]
    ws(http, "enrol_manual_enrol_users", enrolments=[{**enrolment, "roleid": 3}])
    [listed] = ws(http, "core_enrol_get_enrolled_users", courseid=2)
    assert [r["shortname"] for r in listed["roles"]] == ["editingteacher", "student"]
    course = ws(http, "core_course_get_courses_by_field", field="id", value=2)["courses"][0]
    assert course["contacts"] == [{"id": u["id"], "fullname": "Sam Tester"}]
    assert len(next(c for c in site.snapshot()["courses"] if c["id"] == 2)["enrolments"]) == 1


def test_enrol_errors_and_all_or_nothing(http, site):
    [u] = ws(http, "core_user_create_users", users=[new_user("sam")])
    missing = ws_error(http, "enrol_manual_enrol_users", enrolments=[
        {"roleid": 5, "userid": u["id"], "courseid": 2}, {"roleid": 5, "userid": u["id"], "courseid": 404}])
    assert (missing["errorcode"], missing["debuginfo"]) == ("invalidparameter", "Context does not exist")
    assert ws(http, "core_enrol_get_enrolled_users", courseid=2) == []  # the first one was rolled back
    role = ws_error(http, "enrol_manual_enrol_users", enrolments=[{"roleid": 9, "userid": u["id"], "courseid": 2}])
    assert role["message"] == (f"You don't have the permission to assign this role (9) to this user ({u['id']}) "
                               "in this course (2).")
    nouser = ws_error(http, "enrol_manual_enrol_users", enrolments=[{"roleid": 5, "userid": 999, "courseid": 2}])
    assert (nouser["errorcode"], nouser["debuginfo"]) == ("codingerror", "userid:999")
    front = ws_error(http, "enrol_manual_enrol_users", enrolments=[{"roleid": 5, "userid": u["id"], "courseid": 1}])
    assert front["errorcode"] == "wsnoinstance" and "{$a->courseid}" in front["message"]


def test_unenrol(http):
    [u] = ws(http, "core_user_create_users", users=[new_user("sam")])
    assert ws(http, "enrol_manual_unenrol_users", enrolments=[{"userid": u["id"], "courseid": 2}]) is None  # no-op
    ws(http, "enrol_manual_enrol_users", enrolments=[{"roleid": 5, "userid": u["id"], "courseid": 2}])
    assert ws(http, "enrol_manual_unenrol_users", enrolments=[{"userid": u["id"], "courseid": 2, "roleid": 5}]) is None
    assert ws(http, "core_enrol_get_enrolled_users", courseid=2) == []
    missing = ws_error(http, "enrol_manual_unenrol_users", enrolments=[{"userid": u["id"], "courseid": 404}])
    assert (missing["errorcode"], missing["message"]) == ("invalidrecord",
                                                          "Can not find data record in database table course.")
    nouser = ws_error(http, "enrol_manual_unenrol_users", enrolments=[{"userid": 999, "courseid": 2}])
    assert nouser["debuginfo"] == "User id not exist: 999"


def test_enrolled_users_options(http):
    users = ws(http, "core_user_create_users", users=[new_user("amy"), new_user("ben")])
    ws(http, "enrol_manual_enrol_users", enrolments=[
        {"roleid": 5, "userid": users[0]["id"], "courseid": 2},
        {"roleid": 5, "userid": users[1]["id"], "courseid": 2, "suspend": 1}])
    assert [u["username"] for u in ws(http, "core_enrol_get_enrolled_users", courseid=2)] == ["amy", "ben"]
    active = ws(http, "core_enrol_get_enrolled_users", courseid=2, options=[{"name": "onlyactive", "value": 1}])
    assert [u["username"] for u in active] == ["amy"]
    slim = ws(http, "core_enrol_get_enrolled_users", courseid=2, options=[{"name": "userfields", "value": "email"}])
    assert slim[0] == {"id": users[0]["id"], "fullname": "Amy Tester", "email": "amy@example.org"}
    missing = ws_error(http, "core_enrol_get_enrolled_users", courseid=404)
    assert missing["debuginfo"] == "SELECT * FROM {course} WHERE id = ?\n[array (\n  0 => 404,\n)]"


# ---- faults and admin ---------------------------------------------------------------------------------------------
def test_injected_errors(http, sim, site):
    site.set_faults(error_rate=1.0, kinds=["dml"], seed=1)
    read = ws_error(http, "core_course_get_courses_by_field")
    assert (read["exception"], read["errorcode"], read["message"]) == (
        "dml_read_exception", "dmlreadexception", "Error reading from database")
    write = ws_error(http, "core_course_update_courses", courses=[{"id": 2, "visible": 0}])
    assert (write["exception"], write["errorcode"], write["message"]) == (
        "dml_write_exception", "dmlwriteexception", "Error writing to database")
    assert ws_error(http, "core_course_delete_courses", courseids=["x"])["errorcode"] == "invalidparameter"
    site.set_faults(kinds=["http503"])
    resp = raw_call(http, "core_webservice_get_site_info")
    assert resp.status_code == 503 and "503 Service Temporarily Unavailable" in resp.text
    assert admin(http, "GET", "state").status_code == 200  # never faulted
    site.set_faults(error_rate=0)
    assert next(c for c in site.snapshot()["courses"] if c["id"] == 2)["visible"] == 1  # the failed write left no trace


def test_seeded_faults_replay(http, site):
    def outcomes() -> list[int]:
        site.set_faults(error_rate=0.5, kinds=["http503"], seed=42)
        return [raw_call(http, "core_webservice_get_site_info").status_code for _ in range(12)]

    first = outcomes()
    assert first == outcomes() and set(first) == {200, 503}


def test_an_exact_plan_fails_every_nth_call_cycling_through_the_kinds(http, site):
    site.set_faults(error_every=2, kinds=["http503"])
    codes = [raw_call(http, "core_webservice_get_site_info").status_code for _ in range(6)]
    assert codes == [200, 503] * 3
    site.set_faults(error_every=0)
    assert raw_call(http, "core_webservice_get_site_info").status_code == 200


def test_drop_and_latency(http, site):
    site.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        raw_call(http, "core_webservice_get_site_info")
    site.set_faults(drop_phase="after")
    with pytest.raises(httpx.RemoteProtocolError):
        raw_call(http, "core_course_update_courses", {"courses": [{"id": 2, "visible": 0}]})
    site.set_faults(drop_rate=0, latency=0.2)
    assert next(c for c in site.snapshot()["courses"] if c["id"] == 2)["visible"] == 0  # ran; only the answer was lost
    start = time.monotonic()
    ws(http, "core_webservice_get_site_info")
    assert time.monotonic() - start >= 0.2


def test_admin_round_trip(http, sim):
    fresh = admin(http, "POST", "reset").json()
    assert fresh["categories"] == [] and [c["id"] for c in fresh["courses"]] == [1]
    assert [u["username"] for u in fresh["users"]] == ["guest", "admin"]
    seeded = admin(http, "POST", "seed").json()
    assert [(c["id"], c["name"]) for c in seeded["categories"]] == [(1, "Miscellaneous"), (2, "OpenVLE labs")]
    assert [(c["id"], c["shortname"], c["categoryid"]) for c in seeded["courses"]] == [
        (1, "sandbox", 0), (2, "vle-template", 1)]
    assert admin(http, "POST", "categories", {"name": "Extra"}).json() == {"id": 3}
    assert admin(http, "POST", "courses", {"fullname": "C", "shortname": "c", "categoryid": 3}).json() == {"id": 3}
    assert admin(http, "POST", "users", {"username": "zoe"}).json() == {"id": 3}
    state = admin(http, "POST", "enrolments", {"userid": 3, "courseid": 3, "roleid": 4}).json()
    [enrolment] = next(c for c in state["courses"] if c["id"] == 3)["enrolments"]
    assert (enrolment["userid"], enrolment["roleid"], enrolment["roles"]) == (3, 4, ["teacher"])
    assert admin(http, "POST", "config", {"duplicate_seconds": 0.1}).json()["duplicate_seconds"] == 0.1
    assert admin(http, "POST", "faults", {"latency": 0.01, "seed": 3}).json()["latency"] == 0.01
    assert admin(http, "POST", "faults", {"error_rate": 2}).status_code == 400
    assert admin(http, "POST", "nothing").status_code == 404
    assert admin(http, "GET", "state").json()["config"]["duplicate_seconds"] == 0.1


def test_rest_disabled_and_unknown_paths(http, site):
    site.configure(rest_enabled=False)
    resp = raw_call(http, "core_webservice_get_site_info")
    assert (resp.status_code, resp.content) == (403, b"")
    assert http.get("/login/index.php").status_code == 404


def test_command_line(tmp_path: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.moodle", "--port", "0", "--seed", "--token", "cli-token"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split("/webservice", 1)[0]
        resp = httpx.post(f"{url}/webservice/rest/server.php", timeout=10, data={
            "wstoken": "cli-token", "wsfunction": "core_course_get_courses_by_field", "moodlewsrestformat": "json",
            "field": "shortname", "value": "vle-template"})
        assert resp.json()["courses"][0]["id"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10 * WAIT_SCALE) == 0
