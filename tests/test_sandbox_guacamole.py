"""The Guacamole REST API simulator, driven over real HTTP with httpx."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import WAIT_SCALE
from sandbox.clock import FakeClock
from sandbox.guacamole import GuacamoleSimulator, GuacamoleState, client_link_id, client_url, parse_client_link_id

DATA = "/session/data/mysql"
ERROR_KEYS = {"message", "translatableMessage", "statusCode", "expected", "type"}
RDP = {"parentIdentifier": "ROOT", "name": "lab-1", "protocol": "rdp",
       "parameters": {"hostname": "10.0.0.5", "port": "3389", "username": "student", "password": "s3cret"},
       "attributes": {"max-connections": "1", "max-connections-per-user": "1"}}


@pytest.fixture(scope="module")
def sim() -> Iterator[GuacamoleSimulator]:
    simulator = GuacamoleSimulator(username="guacadmin", password="guacadmin", data_source="mysql")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def state(sim: GuacamoleSimulator) -> GuacamoleState:
    sim.state.reset()
    return sim.state


@pytest.fixture
def http(sim: GuacamoleSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim.url}/api", timeout=10) as client:
        yield client


def login(http: httpx.Client, username: str = "guacadmin", password: str = "guacadmin") -> str:
    resp = http.post("/tokens", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()["authToken"]


@pytest.fixture
def api(http: httpx.Client) -> httpx.Client:
    """A client logged in as guacadmin (token in the Guacamole-Token header)."""
    http.headers["Guacamole-Token"] = login(http)
    return http


def error(resp: httpx.Response, status: int, type_: str, message: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS
    assert (body["type"], body["message"], body["statusCode"]) == (type_, message, None)
    return body


def create_connection(api: httpx.Client, **changes) -> str:
    resp = api.post(f"{DATA}/connections", json={**RDP, **changes})
    assert resp.status_code == 200, resp.text
    return resp.json()["identifier"]


def admin(sim: GuacamoleSimulator, method: str, path: str, json: dict | None = None) -> httpx.Response:
    return httpx.request(method, f"{sim.url}/_sandbox/{path}", json=json, timeout=10)


# ---- sessions ----------------------------------------------------------------------------------------------------
def test_login_returns_a_token_and_the_data_sources(sim, http):
    resp = http.post("/tokens", data={"username": "guacadmin", "password": "guacadmin"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert re.fullmatch(r"[0-9A-F]{64}", body["authToken"])
    assert {k: v for k, v in body.items() if k != "authToken"} == {
        "username": "guacadmin", "dataSource": "mysql", "availableDataSources": ["mysql", "mysql-shared"]}
    assert login(http) != body["authToken"]  # every login is a new session


def test_wrong_credentials_are_403_invalid_credentials(http):
    body = error(http.post("/tokens", data={"username": "guacadmin", "password": "nope"}),
                 403, "INVALID_CREDENTIALS", "Invalid login")
    assert body["expected"] == [{"name": "username", "type": "USERNAME"}, {"name": "password", "type": "PASSWORD"}]
    assert body["translatableMessage"] == {"key": "APP.TEXT_UNTRANSLATED", "variables": {"MESSAGE": "Invalid login"}}
    error(http.post("/tokens", data={"username": "nobody", "password": "guacadmin"}),
          403, "INVALID_CREDENTIALS", "Invalid login")
    # credentials are form fields: a JSON body carries none
    error(http.post("/tokens", json={"username": "guacadmin", "password": "guacadmin"}),
          403, "INVALID_CREDENTIALS", "Invalid login")


def test_token_in_header_or_query_and_the_header_wins(http):
    token = login(http)
    assert http.get(f"{DATA}/connections", headers={"Guacamole-Token": token}).status_code == 200
    assert http.get(f"{DATA}/connections", params={"token": token}).status_code == 200
    resp = http.get(f"{DATA}/connections", params={"token": token}, headers={"Guacamole-Token": "BAD"})
    error(resp, 403, "PERMISSION_DENIED", "Permission Denied.")


def test_bad_or_missing_token_is_403_even_on_unknown_paths(http):
    for headers in ({}, {"Guacamole-Token": "0" * 64}):
        error(http.get(f"{DATA}/connections", headers=headers), 403, "PERMISSION_DENIED", "Permission Denied.")
        error(http.get(f"{DATA}/no-such-thing", headers=headers), 403, "PERMISSION_DENIED", "Permission Denied.")
        error(http.delete("/session", headers=headers), 403, "PERMISSION_DENIED", "Permission Denied.")


def test_logout_by_session_and_by_token(http):
    token = login(http)
    headers = {"Guacamole-Token": token}
    resp = http.delete("/session", headers=headers)
    assert (resp.status_code, resp.content) == (204, b"")
    error(http.get(f"{DATA}/connections", headers=headers), 403, "PERMISSION_DENIED", "Permission Denied.")

    token = login(http)
    assert http.delete(f"/tokens/{token}").status_code == 204
    error(http.delete(f"/tokens/{token}"), 404, "NOT_FOUND", "No such token.")
    error(http.get(f"{DATA}/users", headers={"Guacamole-Token": token}), 403, "PERMISSION_DENIED",
          "Permission Denied.")


def test_expired_tokens_are_403_and_logging_in_again_works(sim, http, state):
    token = login(http)
    assert state.expire_tokens() == 1
    error(http.get(f"{DATA}/connections", headers={"Guacamole-Token": token}), 403, "PERMISSION_DENIED",
          "Permission Denied.")
    fresh = login(http)
    assert http.get(f"{DATA}/connections", headers={"Guacamole-Token": fresh}).status_code == 200


def test_tokens_expire_after_idle_time_only(http, state):
    clock = FakeClock()  # idle time passes when the test says, however slow the machine
    state.tokens.clock = clock.monotonic
    try:
        state.configure(token_ttl=0.6)
        token = login(http)
        headers = {"Guacamole-Token": token}
        for _ in range(3):  # use keeps it alive past the TTL
            clock.advance(0.4)
            assert http.get(f"{DATA}/connections", headers=headers).status_code == 200
        clock.advance(0.61)
        error(http.get(f"{DATA}/connections", headers=headers), 403, "PERMISSION_DENIED", "Permission Denied.")
    finally:
        state.tokens.clock = time.monotonic


def test_posting_a_live_token_reuses_the_session(http):
    token = login(http)
    resp = http.post("/tokens", data={"token": token})
    assert resp.status_code == 200
    assert resp.json()["authToken"] == token
    error(http.post("/tokens", data={"token": "DEAD"}), 403, "INVALID_CREDENTIALS", "Invalid login")


# ---- connections -------------------------------------------------------------------------------------------------
def test_connection_crud(api):
    resp = api.post(f"{DATA}/connections", json={**RDP, "attributes": {**RDP["attributes"], "colour": "red"}})
    assert resp.status_code == 200
    created = resp.json()
    assert created["identifier"] == "1"
    assert created["parameters"] == RDP["parameters"]  # the submitted object comes back
    assert created["attributes"] == RDP["attributes"]  # unknown attributes dropped
    assert create_connection(api, name="lab-2") == "2"

    listing = api.get(f"{DATA}/connections").json()
    assert list(listing) == ["1", "2"]
    one = api.get(f"{DATA}/connections/1").json()
    assert one == listing["1"]
    assert "parameters" not in one
    assert (one["name"], one["parentIdentifier"], one["protocol"], one["activeConnections"]) == (
        "lab-1", "ROOT", "rdp", 0)
    assert one["attributes"] == {"max-connections": "1", "max-connections-per-user": "1", "weight": None,
                                 "failover-only": None, "guacd-hostname": None, "guacd-port": None,
                                 "guacd-encryption": None}
    assert api.get(f"{DATA}/connections/1/parameters").json() == RDP["parameters"]

    resp = api.put(f"{DATA}/connections/1", json={"parentIdentifier": "ROOT", "name": "lab-1b", "protocol": "vnc",
                                                   "parameters": {"hostname": "10.0.0.6", "port": "5900"},
                                                   "attributes": {}})
    assert (resp.status_code, resp.content) == (204, b"")
    assert api.get(f"{DATA}/connections/1/parameters").json() == {"hostname": "10.0.0.6", "port": "5900"}
    one = api.get(f"{DATA}/connections/1").json()
    assert (one["name"], one["protocol"], one["attributes"]["max-connections"]) == ("lab-1b", "vnc", None)

    resp = api.delete(f"{DATA}/connections/1")
    assert (resp.status_code, resp.content) == (204, b"")
    error(api.get(f"{DATA}/connections/1"), 404, "NOT_FOUND", 'Not found: "1"')
    error(api.delete(f"{DATA}/connections/1"), 404, "NOT_FOUND", 'Not found: "1"')
    assert create_connection(api, name="lab-3") == "3"  # identifiers are never reused


def test_connection_names_are_unique_per_parent_group(api):
    create_connection(api)
    body = error(api.post(f"{DATA}/connections", json=RDP), 400, "BAD_REQUEST",
                 'The connection "lab-1" already exists.')
    assert body["translatableMessage"]["variables"] == {"MESSAGE": 'The connection "lab-1" already exists.'}
    # MySQL's collation: names differing only in case collide
    error(api.post(f"{DATA}/connections", json={**RDP, "name": "LAB-1"}), 400, "BAD_REQUEST",
          'The connection "LAB-1" already exists.')
    error(api.post(f"{DATA}/connections", json={**RDP, "name": "  "}), 400, "BAD_REQUEST",
          "Connection names must not be blank.")
    error(api.post(f"{DATA}/connections", json={**RDP, "name": "x", "protocol": "x11"}), 400, "BAD_REQUEST",
          'Unsupported protocol: "x11"')

    group = api.post(f"{DATA}/connectionGroups", json={"parentIdentifier": "ROOT", "name": "course",
                                                        "type": "ORGANIZATIONAL", "attributes": {}}).json()
    create_connection(api, parentIdentifier=group["identifier"])  # same name, other group
    second = create_connection(api, name="lab-2")
    error(api.put(f"{DATA}/connections/{second}", json=RDP), 400, "BAD_REQUEST",
          'The connection "lab-1" already exists.')
    assert api.put(f"{DATA}/connections/{second}", json={**RDP, "name": "lab-2"}).status_code == 204


def test_unknown_paths_methods_and_data_sources(api):
    error(api.get(f"{DATA}/widgets"), 404, "NOT_FOUND", "HTTP 404 Not Found")
    error(api.get("/nothing-here"), 404, "NOT_FOUND", "HTTP 404 Not Found")
    error(api.patch(f"{DATA}/connections/1"), 405, "BAD_REQUEST", "HTTP 405 Method Not Allowed")
    error(api.get("/session/data/postgresql/connections"), 404, "NOT_FOUND",
          'Session not associated with authentication provider "postgresql".')
    error(api.get(f"{DATA}/users/ghost"), 404, "NOT_FOUND", 'Not found: "ghost"')
    error(api.post(f"{DATA}/connections"), 400, "BAD_REQUEST", "Data must be submitted when creating objects.")
    resp = httpx.get(str(api.base_url).removesuffix("/api/") + "/index.html")  # outside /api: Tomcat's page
    assert resp.status_code == 404 and resp.headers["Content-Type"].startswith("text/html")


def test_the_shared_data_source_is_empty_and_read_only(api):
    create_connection(api)
    shared = "/session/data/mysql-shared"
    assert api.get(f"{shared}/connections").json() == {}
    assert api.get(f"{shared}/connectionGroups/ROOT/tree").json()["identifier"] == "ROOT"
    error(api.post(f"{shared}/connections", json=RDP), 403, "PERMISSION_DENIED", "Permission denied.")


# ---- connection groups and the tree ------------------------------------------------------------------------------
def test_groups_and_tree_list_everything(api):
    group = api.post(f"{DATA}/connectionGroups", json={"parentIdentifier": "ROOT", "name": "course",
                                                        "type": "ORGANIZATIONAL", "attributes": {}})
    assert group.status_code == 200 and group.json()["identifier"] == "1"
    error(api.post(f"{DATA}/connectionGroups", json={"parentIdentifier": "ROOT", "name": "Course",
                                                      "type": "ORGANIZATIONAL"}),
          400, "BAD_REQUEST", 'The connection group "Course" already exists.')
    root_conn = create_connection(api)
    nested = create_connection(api, name="lab-2", parentIdentifier="1")
    api.post(f"{DATA}/sharingProfiles", json={"primaryConnectionIdentifier": nested, "name": "watch",
                                              "parameters": {"read-only": "true"}, "attributes": {}})

    assert list(api.get(f"{DATA}/connectionGroups").json()) == ["1"]  # ROOT is no directory entry
    assert api.get(f"{DATA}/connectionGroups/ROOT").json() == {
        "name": "ROOT", "identifier": "ROOT", "type": "ORGANIZATIONAL", "activeConnections": 0, "attributes": {}}
    tree = api.get(f"{DATA}/connectionGroups/ROOT/tree").json()
    assert [c["identifier"] for c in tree["childConnections"]] == [root_conn]
    assert "sharingProfiles" not in tree["childConnections"][0]
    (child,) = tree["childConnectionGroups"]
    assert (child["name"], child["parentIdentifier"]) == ("course", "ROOT")
    (conn,) = child["childConnections"]
    assert (conn["identifier"], conn["parentIdentifier"]) == (nested, "1")
    assert [p["name"] for p in conn["sharingProfiles"]] == ["watch"]
    assert "childConnectionGroups" not in child  # empty child lists are left out

    inner = api.post(f"{DATA}/connectionGroups", json={"parentIdentifier": "1", "name": "inner",
                                                        "type": "BALANCING"}).json()["identifier"]
    error(api.put(f"{DATA}/connectionGroups/1", json={"parentIdentifier": inner, "name": "course",
                                                       "type": "ORGANIZATIONAL"}),
          501, "INTERNAL_ERROR", "A connection group may not contain itself.")
    assert api.delete(f"{DATA}/connectionGroups/1").status_code == 204  # takes its contents along
    assert list(api.get(f"{DATA}/connections").json()) == [root_conn]
    assert api.get(f"{DATA}/sharingProfiles").json() == {}
    assert api.get(f"{DATA}/connectionGroups").json() == {}


# ---- sharing profiles --------------------------------------------------------------------------------------------
def test_sharing_profile_crud(api):
    conn = create_connection(api)
    other = create_connection(api, name="lab-2")
    profile = {"primaryConnectionIdentifier": conn, "name": "watch", "parameters": {"read-only": "true"},
               "attributes": {}}
    resp = api.post(f"{DATA}/sharingProfiles", json=profile)
    assert resp.status_code == 200
    assert resp.json() == {**profile, "identifier": "1"}
    error(api.post(f"{DATA}/sharingProfiles", json=profile), 400, "BAD_REQUEST",
          'The sharing profile "watch" already exists.')
    error(api.post(f"{DATA}/sharingProfiles", json={**profile, "name": ""}), 400, "BAD_REQUEST",
          "Sharing profile names must not be blank.")
    assert api.post(f"{DATA}/sharingProfiles", json={**profile, "primaryConnectionIdentifier": other}).status_code \
        == 200
    # a missing primary connection fails the foreign key: real Guacamole answers 500
    error(api.post(f"{DATA}/sharingProfiles", json={**profile, "primaryConnectionIdentifier": "99"}),
          500, "INTERNAL_ERROR", "Unexpected internal error")

    assert api.get(f"{DATA}/sharingProfiles/1").json() == {
        "name": "watch", "identifier": "1", "primaryConnectionIdentifier": conn, "attributes": {}}
    assert list(api.get(f"{DATA}/sharingProfiles").json()) == ["1", "2"]
    assert list(api.get(f"{DATA}/connections/{conn}/sharingProfiles").json()) == ["1"]
    assert api.get(f"{DATA}/sharingProfiles/1/parameters").json() == {"read-only": "true"}
    assert api.put(f"{DATA}/sharingProfiles/1", json={**profile, "name": "observe", "parameters": {}}
                   ).status_code == 204
    assert api.get(f"{DATA}/sharingProfiles/1").json()["name"] == "observe"
    assert api.get(f"{DATA}/sharingProfiles/1/parameters").json() == {}
    assert api.delete(f"{DATA}/sharingProfiles/1").status_code == 204
    error(api.get(f"{DATA}/sharingProfiles/1"), 404, "NOT_FOUND", 'Not found: "1"')


# ---- users -------------------------------------------------------------------------------------------------------
def test_user_crud(http, api):
    alice = {"username": "alice", "password": "pw1",
             "attributes": {"guac-full-name": "Alice A", "disabled": None, "shoe-size": "42"}}
    resp = api.post(f"{DATA}/users", json=alice)
    assert resp.status_code == 200
    assert resp.json() == {"username": "alice", "attributes": {"guac-full-name": "Alice A", "disabled": None}}
    error(api.post(f"{DATA}/users", json=alice), 400, "BAD_REQUEST", 'User "alice" already exists.')
    error(api.post(f"{DATA}/users", json={**alice, "username": "Alice"}), 400, "BAD_REQUEST",
          'User "Alice" already exists.')
    error(api.post(f"{DATA}/users", json={**alice, "username": ""}), 400, "BAD_REQUEST",
          "The username must not be blank.")

    users = api.get(f"{DATA}/users").json()
    assert list(users) == ["guacadmin", "alice"]
    assert "lastActive" in users["guacadmin"] and "lastActive" not in users["alice"]
    assert "password" not in users["alice"]
    assert users["alice"]["attributes"]["guac-full-name"] == "Alice A"
    assert users["alice"]["attributes"]["timezone"] is None

    resp = api.put(f"{DATA}/users/alice", json={"username": "alice", "password": None,
                                                "attributes": {"guac-email-address": "a@example.org"}})
    assert (resp.status_code, resp.content) == (204, b"")
    login(http, "alice", "pw1")  # a null password keeps the old one
    attrs = api.get(f"{DATA}/users/alice").json()["attributes"]
    assert (attrs["guac-full-name"], attrs["guac-email-address"]) == ("Alice A", "a@example.org")
    assert "lastActive" in api.get(f"{DATA}/users/alice").json()

    assert api.put(f"{DATA}/users/alice", json={"username": "alice", "password": "pw2", "attributes": {}}
                   ).status_code == 204
    error(http.post("/tokens", data={"username": "alice", "password": "pw1"}), 403, "INVALID_CREDENTIALS",
          "Invalid login")
    login(http, "alice", "pw2")
    assert api.put(f"{DATA}/users/alice", json={"username": "alice", "attributes": {"disabled": "true"}}
                   ).status_code == 204
    error(http.post("/tokens", data={"username": "alice", "password": "pw2"}), 403, "INVALID_CREDENTIALS",
          "Invalid login")

    error(api.put(f"{DATA}/users/guacadmin", json={"username": "guacadmin", "attributes": {}}),
          403, "PERMISSION_DENIED", "Permission denied.")
    error(api.delete(f"{DATA}/users/guacadmin"), 501, "INTERNAL_ERROR", "Deleting your own user is not allowed.")
    assert api.delete(f"{DATA}/users/alice").status_code == 204
    error(api.get(f"{DATA}/users/alice"), 404, "NOT_FOUND", 'Not found: "alice"')


def test_expired_password_needs_a_new_one(http, api):
    api.post(f"{DATA}/users", json={"username": "bob", "password": "old", "attributes": {"expired": "true"}})
    body = error(http.post("/tokens", data={"username": "bob", "password": "old"}), 403,
                 "INSUFFICIENT_CREDENTIALS", "Password has expired")
    assert body["translatableMessage"] == {"key": "LOGIN.INFO_PASSWORD_EXPIRED", "variables": None}
    assert [f["name"] for f in body["expected"]] == ["username", "password", "new-password", "confirm-new-password"]
    error(http.post("/tokens", data={"username": "bob", "password": "old", "new-password": "a",
                                     "confirm-new-password": "b"}), 400, "BAD_REQUEST", "New passwords do not match.")
    assert http.post("/tokens", data={"username": "bob", "password": "old", "new-password": "new",
                                      "confirm-new-password": "new"}).status_code == 200
    login(http, "bob", "new")


# ---- permissions -------------------------------------------------------------------------------------------------
def perms(api: httpx.Client, user: str) -> dict:
    resp = api.get(f"{DATA}/users/{user}/permissions")
    assert resp.status_code == 200
    return resp.json()


def test_new_objects_carry_the_implicit_permissions(api):
    assert perms(api, "guacadmin") == {
        "connectionPermissions": {}, "connectionGroupPermissions": {}, "sharingProfilePermissions": {},
        "activeConnectionPermissions": {}, "userPermissions": {"guacadmin": ["READ", "UPDATE", "ADMINISTER"]},
        "userGroupPermissions": {},
        "systemPermissions": ["CREATE_USER", "CREATE_USER_GROUP", "CREATE_CONNECTION", "CREATE_CONNECTION_GROUP",
                              "CREATE_SHARING_PROFILE", "ADMINISTER"]}
    conn = create_connection(api)
    api.post(f"{DATA}/users", json={"username": "alice", "password": "pw", "attributes": {}})
    mine = perms(api, "guacadmin")
    assert mine["connectionPermissions"] == {conn: ["READ", "UPDATE", "DELETE", "ADMINISTER"]}
    assert mine["userPermissions"]["alice"] == ["READ", "UPDATE", "DELETE", "ADMINISTER"]
    assert perms(api, "alice")["userPermissions"] == {"alice": ["READ"]}  # a new user can read itself


def test_permission_patch_add_remove_idempotent(api):
    conn = create_connection(api)
    api.post(f"{DATA}/users", json={"username": "alice", "password": "pw", "attributes": {}})
    grant = [{"op": "add", "path": f"/connectionPermissions/{conn}", "value": "READ"},
             {"op": "add", "path": "/systemPermissions", "value": "CREATE_CONNECTION"}]
    for _ in range(2):  # granting twice is a no-op
        resp = api.patch(f"{DATA}/users/alice/permissions", json=grant)
        assert (resp.status_code, resp.content) == (204, b"")
    got = perms(api, "alice")
    assert (got["connectionPermissions"], got["systemPermissions"]) == ({conn: ["READ"]}, ["CREATE_CONNECTION"])

    # adds apply before removes, whatever their order in the patch
    resp = api.patch(f"{DATA}/users/alice/permissions", json=[
        {"op": "remove", "path": f"/connectionPermissions/{conn}", "value": "UPDATE"},
        {"op": "add", "path": f"/connectionPermissions/{conn}", "value": "UPDATE"}])
    assert resp.status_code == 204
    assert perms(api, "alice")["connectionPermissions"] == {conn: ["READ"]}

    revoke = [{"op": "remove", "path": f"/connectionPermissions/{conn}", "value": "READ"},
              {"op": "remove", "path": "/systemPermissions", "value": "CREATE_CONNECTION"}]
    for _ in range(2):
        assert api.patch(f"{DATA}/users/alice/permissions", json=revoke).status_code == 204
    got = perms(api, "alice")
    assert (got["connectionPermissions"], got["systemPermissions"]) == ({}, [])


def test_permission_patch_rejections(api):
    create_connection(api)
    api.post(f"{DATA}/users", json={"username": "alice", "password": "pw", "attributes": {}})
    url = f"{DATA}/users/alice/permissions"
    error(api.patch(url, json=[{"op": "replace", "path": "/connectionPermissions/1", "value": "READ"}]),
          400, "BAD_REQUEST", 'Unsupported patch operation: "replace"')
    error(api.patch(url, json=[{"op": "add", "path": "/widgetPermissions/1", "value": "READ"}]),
          400, "BAD_REQUEST", 'Unsupported patch path: "/widgetPermissions/1"')
    error(api.patch(url, json=[{"op": "add", "path": "/connectionPermissions/1", "value": "READ"},
                               {"op": "add", "path": "/connectionPermissions/1", "value": "OWN"}]),
          500, "INTERNAL_ERROR", "Unexpected internal error")
    assert perms(api, "alice")["connectionPermissions"] == {}  # a rejected patch changes nothing
    error(api.patch(f"{DATA}/users/ghost/permissions", json=[]), 404, "NOT_FOUND", 'Not found: "ghost"')

    # MySQL's INSERT IGNORE skips rows whose object does not exist: 204, and nothing is stored
    resp = api.patch(url, json=[{"op": "add", "path": "/connectionPermissions/99", "value": "READ"},
                                {"op": "add", "path": "/userPermissions/ghost", "value": "READ"}])
    assert resp.status_code == 204
    got = perms(api, "alice")
    assert (got["connectionPermissions"], got["userPermissions"]) == ({}, {"alice": ["READ"]})


def test_a_non_admin_sees_and_does_only_what_it_is_granted(http, api):
    visible, hidden = create_connection(api), create_connection(api, name="lab-2")
    api.post(f"{DATA}/users", json={"username": "alice", "password": "pw", "attributes": {}})
    api.patch(f"{DATA}/users/alice/permissions",
              json=[{"op": "add", "path": f"/connectionPermissions/{visible}", "value": "READ"}])
    student = {"Guacamole-Token": login(http, "alice", "pw")}
    assert list(http.get(f"{DATA}/connections", headers=student).json()) == [visible]
    assert [c["identifier"] for c in http.get(f"{DATA}/connectionGroups/ROOT/tree", headers=student).json()[
        "childConnections"]] == [visible]
    error(http.get(f"{DATA}/connections/{hidden}", headers=student), 404, "NOT_FOUND", f'Not found: "{hidden}"')
    error(http.get(f"{DATA}/connections/{visible}/parameters", headers=student), 403, "PERMISSION_DENIED",
          "Permission to read connection parameters denied.")
    error(http.post(f"{DATA}/connections", headers=student, json={**RDP, "name": "mine"}), 403,
          "PERMISSION_DENIED", "Permission denied.")
    error(http.delete(f"{DATA}/connections/{visible}", headers=student), 403, "PERMISSION_DENIED",
          "Permission denied.")
    assert list(http.get(f"{DATA}/users", headers=student).json()) == ["alice"]


def test_deletes_cascade_to_profiles_and_permissions(api):
    conn = create_connection(api)
    api.post(f"{DATA}/sharingProfiles", json={"primaryConnectionIdentifier": conn, "name": "watch",
                                              "parameters": {}, "attributes": {}})
    for name in ("alice", "bob"):
        api.post(f"{DATA}/users", json={"username": name, "password": "pw", "attributes": {}})
    api.patch(f"{DATA}/users/alice/permissions", json=[
        {"op": "add", "path": f"/connectionPermissions/{conn}", "value": "READ"},
        {"op": "add", "path": "/sharingProfilePermissions/1", "value": "READ"},
        {"op": "add", "path": "/userPermissions/bob", "value": "READ"}])

    assert api.delete(f"{DATA}/connections/{conn}").status_code == 204
    assert api.get(f"{DATA}/sharingProfiles").json() == {}
    got = perms(api, "alice")
    assert (got["connectionPermissions"], got["sharingProfilePermissions"]) == ({}, {})
    assert perms(api, "guacadmin")["connectionPermissions"] == {}

    assert api.delete(f"{DATA}/users/bob").status_code == 204
    assert perms(api, "alice")["userPermissions"] == {"alice": ["READ"]}
    assert "bob" not in perms(api, "guacadmin")["userPermissions"]


# ---- client links ------------------------------------------------------------------------------------------------
def test_client_link_ids():
    assert client_link_id("1", "postgresql") == "MQBjAHBvc3RncmVzcWw"  # the reference's example
    assert parse_client_link_id("MQBjAHBvc3RncmVzcWw") == ("1", "c", "postgresql")
    for identifier in ("7", "42", "1234"):
        link = client_link_id(identifier, "mysql")
        assert "=" not in link and "+" not in link and "/" not in link
        assert parse_client_link_id(link) == (identifier, "c", "mysql")
    assert client_url("https://host/guacamole/", "1", "postgresql") == \
        "https://host/guacamole/#/client/MQBjAHBvc3RncmVzcWw"


# ---- faults ------------------------------------------------------------------------------------------------------
def test_error_rate_gives_500s_but_never_on_admin(sim, api, state):
    state.set_faults(error_rate=1.0)
    error(api.get(f"{DATA}/connections"), 500, "INTERNAL_ERROR", "Unexpected internal error")
    error(api.post("/tokens", data={"username": "guacadmin", "password": "guacadmin"}), 500, "INTERNAL_ERROR",
          "Unexpected internal error")
    error(api.post(f"{DATA}/connections", json=RDP), 500, "INTERNAL_ERROR", "Unexpected internal error")
    assert admin(sim, "GET", "state").json()["connections"] == []  # a faulted call changes nothing
    state.set_faults(error_rate=0.0)
    assert api.get(f"{DATA}/connections").status_code == 200


def test_drop_rate_closes_the_connection(sim, api, state):
    state.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.get(f"{DATA}/connections")
    assert admin(sim, "GET", "state").status_code == 200


def test_latency_is_added(api, state):
    state.set_faults(latency=0.3)
    started = time.monotonic()
    assert api.get(f"{DATA}/connections").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_seeded_faults_replay(api, state):
    def run() -> list[int]:
        state.set_faults(error_rate=0.5, seed=7)
        return [api.get(f"{DATA}/connections").status_code for _ in range(12)]

    first = run()
    assert set(first) == {200, 500}
    assert run() == first


def test_an_exact_plan_fails_every_nth_request(sim, api, state):
    admin(sim, "POST", "faults", {"error_every": 3})
    codes = [api.get(f"{DATA}/connections").status_code for _ in range(9)]
    assert codes == [200, 200, 500] * 3
    state.set_faults(error_every=0)
    assert api.get(f"{DATA}/connections").status_code == 200


# ---- admin -------------------------------------------------------------------------------------------------------
def test_admin_endpoints_round_trip(sim, api):
    conn = create_connection(api)
    api.post(f"{DATA}/sharingProfiles", json={"primaryConnectionIdentifier": conn, "name": "watch",
                                              "parameters": {"read-only": "true"}, "attributes": {}})
    api.post(f"{DATA}/users", json={"username": "alice", "password": "pw", "attributes": {}})

    snap = admin(sim, "GET", "state").json()
    assert snap["connections"][0]["parameters"] == RDP["parameters"]
    assert snap["sharingProfiles"][0]["parameters"] == {"read-only": "true"}
    assert [(u["username"], u["password"]) for u in snap["users"]] == [("guacadmin", "guacadmin"), ("alice", "pw")]
    assert snap["permissions"]["alice"]["userPermissions"] == {"alice": ["READ"]}
    assert snap["tokens"] == 1
    assert snap["faults"] == {"latency": 0.0, "error_rate": 0.0, "error_every": 0, "drop_rate": 0.0, "seed": None}

    resp = admin(sim, "POST", "faults", {"error_rate": 0.25, "seed": 3})
    assert resp.json() == {"latency": 0.0, "error_rate": 0.25, "error_every": 0, "drop_rate": 0.0, "seed": 3}
    assert admin(sim, "POST", "faults", {"error_rate": 2}).status_code == 400
    assert admin(sim, "POST", "faults", {"colour": 1}).status_code == 400
    admin(sim, "POST", "faults", {"error_rate": 0})

    assert admin(sim, "POST", "expire-tokens").json() == {"expired": 1}
    error(api.get(f"{DATA}/connections"), 403, "PERMISSION_DENIED", "Permission Denied.")
    assert admin(sim, "POST", "config", {"token_ttl": 60}).json()["token_ttl"] == 60

    reset = admin(sim, "POST", "reset").json()
    assert (reset["connections"], reset["sharingProfiles"], reset["tokens"]) == ([], [], 0)
    assert [u["username"] for u in reset["users"]] == ["guacadmin"]
    assert reset["config"]["token_ttl"] == 3600.0
    assert admin(sim, "GET", "nothing").status_code == 404
    api.headers["Guacamole-Token"] = login(api)
    assert create_connection(api) == "1"  # identifiers start over


def test_command_line_serves_until_terminated():
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.guacamole", "--port", "0", "--username", "admin",
                             "--password", "secret"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://\S+)/api", line).group(1)
        resp = httpx.post(f"{url}/api/tokens", data={"username": "admin", "password": "secret"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["username"] == "admin"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10 * WAIT_SCALE) == 0
        proc.stdout.close()
