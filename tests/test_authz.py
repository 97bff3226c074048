"""The authorization matrix: every endpoint x each role x own object / someone else's object gives
the expected status, and no answer carries anything of another user's.

The world: event E1 taught by teach-one with participants stud-one (VM V1) and stud-two (VM V2);
event E2 taught by teach-two with participant stud-three (VM V3); an admin; nobody logged in.
Unauthorised callers go first, so a refused change never alters what the allowed ones find.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from conftest import _flush, _use
from helpers import account, bearer
from openvle.db.engine import session_scope
from openvle.db.models import Base, Node, Participant, Vm, VmState, utcnow
from openvle.jobs.vms import request_action
from openvle.lab_events import create_event, create_template

ACTORS = ("anon", "stud-two", "teach-two", "stud-one", "teach-one", "admin")
# What each actor must never see in any answer (names, emails and VMs of other people's things).
SECRET_OF = {
    "stud-one": ("stud-two", "stud-three", "teach-two", "Lab Two", "vm-v2", "vm-v3"),
    "stud-two": ("stud-one", "stud-three", "teach-two", "Lab Two", "vm-v1", "vm-v3"),
    "teach-one": ("stud-three", "teach-two", "Lab Two", "vm-v3"),
    "teach-two": ("stud-one", "stud-two", "teach-one", "Lab One", "vm-v1", "vm-v2"),
    "admin": (),
    "anon": ("stud", "teach", "Lab", "vm-"),
}


@pytest.fixture(scope="module")
def world(stores):
    _use(stores)
    _flush(stores)
    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    ids, tokens = {}, {}
    for name, role in (("admin", "admin"), ("teach-one", "teacher"), ("teach-two", "teacher"),
                       ("stud-one", "student"), ("stud-two", "student"), ("stud-three", "student")):
        ids[name], tokens[name] = account(name, role)
    template = create_template("tpl", pve_vmid=9001, node="pve1")
    start = utcnow() + dt.timedelta(days=10)
    person = lambda n: {"username": n, "email": f"{n}@uni.example"}  # noqa: E731
    e1 = create_event("Lab One", template, start, start + dt.timedelta(hours=2),
                      participants_=[person("stud-one"), person("stud-two")], teachers=[person("teach-one")])
    e2 = create_event("Lab Two", template, start, start + dt.timedelta(hours=2),
                      participants_=[person("stud-three")], teachers=[person("teach-two")])
    vms = {}
    with session_scope() as session:
        session.add_all([Node(name="pve1", status="online"), Node(name="pve2", status="online")])
        for key, owner, event in (("v1", "stud-one", e1), ("v2", "stud-two", e1), ("v3", "stud-three", e2)):
            vm = Vm(name=f"vm-{key}", template_id=template, vmid=10000 + len(vms), node="pve1", state=VmState.READY,
                    status="running", event_id=event, user_id=ids[owner])
            session.add(vm)
            session.flush()
            vms[key] = vm.id
            session.execute(update(Participant).where(Participant.event_id == event,
                                                      Participant.user_id == ids[owner]).values(vm_id=vm.id))
    tasks = {
        "v1": request_action("reset", vms["v1"], requested_by="user:stud-one").id,
        "v3": request_action("reset", vms["v3"], requested_by="user:stud-three").id,
    }
    from openvle.enqueue import enqueue_operation

    tasks["e1"] = enqueue_operation("demo.core_periodic", {}, target=f"event:{e1}", requested_by="user:teach-one").id
    yield {"ids": ids, "tokens": tokens, "e1": e1, "e2": e2, "vms": vms, "tasks": tasks, "template": template}
    _flush(stores)


def _client(world, who: str) -> TestClient:
    from openvle.backend.app import create_app

    client = TestClient(create_app())
    if who != "anon":
        client.headers.update(bearer(world["tokens"][who]))
    return client


def status_map(anon=401, s2=None, t2=None, s1=None, t1=None, admin=None) -> dict[str, int]:
    return dict(zip(ACTORS, (anon, s2, t2, s1, t1, admin), strict=True))


ALL_OK = status_map(s2=200, t2=200, s1=200, t1=200, admin=200)
ADMIN_ONLY = status_map(s2=403, t2=403, s1=403, t1=403, admin=200)


def cases(w) -> list[tuple[str, str, object, dict[str, int]]]:
    e1, e2, v1, v3 = w["e1"], w["e2"], w["vms"]["v1"], w["vms"]["v3"]
    s1, s3 = w["ids"]["stud-one"], w["ids"]["stud-three"]
    t_v1, t_v3, t_e1, tpl = w["tasks"]["v1"], w["tasks"]["v3"], w["tasks"]["e1"], w["template"]
    new_event = {"name": "Lab Three", "template": "tpl", "start": "2031-01-01T09:00:00Z",
                 "end": "2031-01-01T10:00:00Z", "status": "draft"}
    return [
        # reads
        ("GET", "/api/me", None, ALL_OK),
        ("GET", "/api/events", None, ALL_OK),
        ("GET", f"/api/events/{e1}", None, status_map(s2=200, t2=404, s1=200, t1=200, admin=200)),
        ("GET", f"/api/events/{e2}", None, status_map(s2=404, t2=200, s1=404, t1=404, admin=200)),
        ("GET", f"/api/events/{e1}/progress", None, status_map(s2=200, t2=404, s1=200, t1=200, admin=200)),
        ("GET", f"/api/events/{e1}/participants", None, status_map(s2=403, t2=404, s1=403, t1=200, admin=200)),
        ("GET", "/api/vms", None, ALL_OK),
        ("GET", f"/api/vms/{v1}", None, status_map(s2=404, t2=404, s1=200, t1=200, admin=200)),
        ("GET", f"/api/vms/{v3}", None, status_map(s2=404, t2=200, s1=404, t1=404, admin=200)),
        ("GET", "/api/tasks", None, ALL_OK),
        ("GET", f"/api/tasks/{t_v1}", None, status_map(s2=404, t2=404, s1=200, t1=200, admin=200)),
        ("GET", f"/api/tasks/{t_v3}", None, status_map(s2=404, t2=200, s1=404, t1=404, admin=200)),
        ("GET", f"/api/tasks/{t_e1}", None, status_map(s2=404, t2=404, s1=404, t1=200, admin=200)),
        ("GET", "/api/templates", None, status_map(s2=403, t2=200, s1=403, t1=200, admin=200)),
        ("GET", f"/api/templates/{tpl}", None, status_map(s2=404, t2=200, s1=404, t1=200, admin=200)),
        ("GET", "/api/users", None, ADMIN_ONLY),
        ("GET", f"/api/users/{s1}", None, status_map(s2=404, t2=404, s1=200, t1=404, admin=200)),
        ("GET", f"/api/users/{s1}/tokens", None, status_map(s2=404, t2=404, s1=200, t1=404, admin=200)),
        ("GET", f"/api/users/{s3}", None, status_map(s2=404, t2=404, s1=404, t1=404, admin=200)),
        ("GET", "/api/queues", None, ADMIN_ONLY),
        ("GET", "/api/workers", None, ADMIN_ONLY),
        ("GET", "/api/scheduler", None, ADMIN_ONLY),
        ("GET", "/api/nodes", None, ADMIN_ONLY),
        ("GET", "/api/audit", None, ADMIN_ONLY),
        # changes
        ("POST", f"/api/vms/{v1}/start", None, status_map(s2=404, t2=404, s1=202, t1=202, admin=202)),
        ("POST", f"/api/vms/{v3}/stop", None, status_map(s2=404, t2=202, s1=404, t1=404, admin=202)),
        ("POST", f"/api/vms/{v1}/migrate", {"target": "pve2"},
         status_map(s2=404, t2=404, s1=403, t1=403, admin=202)),
        ("POST", f"/api/tasks/{t_v1}/cancel?dry_run=true", None,
         status_map(s2=404, t2=404, s1=403, t1=403, admin=200)),
        ("POST", "/api/tasks/actions/cancel", {"task_ids": [t_v3], "dry_run": True}, ADMIN_ONLY),
        ("PATCH", f"/api/events/{e1}", {"description": "week 4"},
         status_map(s2=403, t2=404, s1=403, t1=200, admin=200)),
        ("POST", f"/api/events/{e1}/participants", {"username": "late-one", "email": "late-one@uni.example"},
         status_map(s2=403, t2=404, s1=403, t1=201, admin=201)),
        ("DELETE", f"/api/events/{e1}/participants/{w['ids']['stud-two']}", None,
         status_map(s2=403, t2=404, s1=403, t1=204, admin=404)),
        ("POST", f"/api/events/{e2}/deploy", None, status_map(s2=404, t2=202, s1=404, t1=404, admin=202)),
        ("POST", "/api/events", new_event, status_map(s2=403, t2=201, s1=403, t1=201, admin=201)),
        ("POST", "/api/templates", {"name": "tpl-2", "pve_vmid": 9002, "node": "pve1"},
         status_map(s2=403, t2=403, s1=403, t1=403, admin=201)),
        ("PATCH", f"/api/templates/{tpl}", {"port": 3390}, status_map(s2=403, t2=403, s1=403, t1=403, admin=200)),
        ("POST", "/api/users", {"username": "made", "email": "made@uni.example", "password": "long enough 1"},
         status_map(s2=403, t2=403, s1=403, t1=403, admin=201)),
        ("PATCH", f"/api/users/{s3}", {"role": "teacher"}, status_map(s2=403, t2=403, s1=403, t1=403, admin=200)),
        ("DELETE", f"/api/events/{e2}", None, status_map(s2=404, t2=409, s1=404, t1=404, admin=409)),
    ]


def test_every_endpoint_answers_each_role_as_the_rules_say_and_leaks_nothing(world):
    clients = {who: _client(world, who) for who in ACTORS}
    wrong, leaks = [], []
    for method, path, body, expected in cases(world):
        for who in ACTORS:
            response = clients[who].request(method, path, json=body)
            if response.status_code != expected[who]:
                wrong.append(f"{who:9} {method} {path}: {response.status_code}, expected {expected[who]} "
                             f"({response.text[:150]})")
            if response.status_code < 300:
                leaked = [s for s in SECRET_OF[who] if s in response.text]
                if leaked:
                    leaks.append(f"{who} {method} {path} shows {leaked}: {response.text[:300]}")
            assert "password_hash" not in response.text and "guacamole_password" not in response.text
    assert not wrong, "\n" + "\n".join(wrong)
    assert not leaks, "\n" + "\n".join(leaks)


def test_lists_hold_exactly_what_each_role_may_see(world):
    names = {who: [e["name"] for e in _client(world, who).get("/api/events").json()] for who in ACTORS[1:]}
    assert names["stud-one"] == ["Lab One"] and names["stud-two"] in ([], ["Lab One"])
    assert "Lab Two" in names["teach-two"] and "Lab One" not in names["teach-two"]
    assert "Lab One" in names["teach-one"] and "Lab Two" not in names["teach-one"]
    assert {"Lab One", "Lab Two"} <= set(names["admin"])
    vms = {who: sorted(v["name"] for v in _client(world, who).get("/api/vms").json()["items"])
           for who in ("stud-one", "teach-one", "teach-two", "admin")}
    assert vms == {"stud-one": ["vm-v1"], "teach-one": ["vm-v1", "vm-v2"], "teach-two": ["vm-v3"],
                   "admin": ["vm-v1", "vm-v2", "vm-v3"]}
    task_vms = {who: {t["vm_id"] for t in _client(world, who).get("/api/tasks").json()["items"]}
                for who in ("stud-one", "teach-two")}
    assert task_vms["stud-one"] <= {world["vms"]["v1"]}
    assert task_vms["teach-two"] - {None} <= {world["vms"]["v3"]}
    student_view = _client(world, "stud-one").get(f"/api/events/{world['e1']}").json()
    assert [m["username"] for m in student_view["members"]] == ["stud-one"] and not student_view["teaches"]
