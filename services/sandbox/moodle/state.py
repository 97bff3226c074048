"""The in-memory site behind one lock: records, id sequences, settings, faults, and the admin operations.

Functions run under `lock`; the all-or-nothing ones inside `transaction()`. Id sequences live outside the
rolled-back data: like database sequences, a rolled-back insert still uses up its id.
"""

from __future__ import annotations

import copy
import hashlib
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..faults import EveryNth
from .model import (
    ADMIN_ID,
    FAULT_KINDS,
    GUEST_ID,
    ROLES,
    SITEID,
    Category,
    Course,
    Enrolment,
    Faults,
    SimConfig,
    User,
    now,
)


@dataclass
class FaultDecision:
    drop: str | None = None  # "before" | "after"
    latency: float = 0.0
    error: str | None = None  # a FAULT_KINDS member


def hash_password(password: str) -> str:
    return "sha256$" + hashlib.sha256(password.encode()).hexdigest()


class MoodleState:
    def __init__(self, *, duplicate_seconds: float = 2.0, seed: int | None = None, **config: Any):
        self.lock = threading.RLock()
        self._initial = SimConfig(duplicate_seconds=_non_negative("duplicate_seconds", duplicate_seconds), **config)
        self._initial_seed = seed
        self.reset()

    # ---- admin ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh install: the site course, guest and admin; no categories; initial settings; no faults."""
        with self.lock:
            self.config = copy.deepcopy(self._initial)
            self.categories: dict[int, Category] = {}
            self.courses: dict[int, Course] = {
                SITEID: Course(SITEID, 0, self.config.sitename, "sandbox", format="site", manual_enrol=False,
                               enablecompletion=0, showactivitydates=0, showcompletionconditions=0, startdate=0),
            }
            self.users: dict[int, User] = {
                GUEST_ID: User(GUEST_ID, "guest", "Guest user", " ", "root@localhost",
                               description="This user is a special user that allows read-only access to some courses."),
                ADMIN_ID: User(ADMIN_ID, "admin", "Admin", "User", "admin@example.com",
                               password=hash_password("Sandbox-admin-1"), firstaccess=now()),
            }
            self._next = {"course": SITEID + 1, "user": ADMIN_ID + 1, "category": 1}
            self.faults = Faults(seed=self._initial_seed)
            self.rng = random.Random(self._initial_seed)
            self.error_plan = EveryNth()

    def seed(self) -> None:
        """The `--seed` site: categories 1 "Miscellaneous" and 2 "OpenVLE labs", template course 2."""
        with self.lock:
            if 1 not in self.categories:
                self.add_category("Miscellaneous", id=1)
            if 2 not in self.categories:
                self.add_category("OpenVLE labs", id=2)
            if 2 not in self.courses:
                self.add_course("VLE lab template", "vle-template", 1, id=2)

    def configure(self, duplicate_seconds: float | None = None, debug: bool | None = None,
                  password_policy: bool | None = None, rest_enabled: bool | None = None,
                  max_input_vars: int | None = None, sitename: str | None = None) -> dict:
        with self.lock:
            cfg = self.config
            if duplicate_seconds is not None:
                cfg.duplicate_seconds = _non_negative("duplicate_seconds", duplicate_seconds)
            if debug is not None:
                cfg.debug = bool(debug)
            if password_policy is not None:
                cfg.password_policy = bool(password_policy)
            if rest_enabled is not None:
                cfg.rest_enabled = bool(rest_enabled)
            if max_input_vars is not None:
                if int(max_input_vars) < 1:
                    raise ValueError("max_input_vars must be >= 1")
                cfg.max_input_vars = int(max_input_vars)
            if sitename is not None:
                cfg.sitename = self.courses[SITEID].fullname = str(sitename)
            return cfg.as_dict()

    def set_faults(self, error_rate: float | None = None, latency: float | None = None,
                   drop_rate: float | None = None, seed: int | None = None, drop_phase: str | None = None,
                   kinds: list[str] | None = None, error_every: int | None = None) -> dict:
        with self.lock:
            f = self.faults
            if error_every is not None:
                f.error_every = self.error_plan.set(error_every)
            if error_rate is not None:
                f.error_rate = _rate("error_rate", error_rate)
            if latency is not None:
                f.latency = _non_negative("latency", latency)
            if drop_rate is not None:
                f.drop_rate = _rate("drop_rate", drop_rate)
            if drop_phase is not None:
                if drop_phase not in ("before", "after"):
                    raise ValueError("drop_phase must be 'before' or 'after'")
                f.drop_phase = drop_phase
            if kinds is not None:
                unknown = set(kinds) - set(FAULT_KINDS)
                if unknown or not kinds:
                    raise ValueError(f"kinds must be a non-empty subset of {list(FAULT_KINDS)}")
                f.kinds = tuple(k for k in FAULT_KINDS if k in kinds)
            if seed is not None:
                f.seed = int(seed)
                self.rng = random.Random(f.seed)
            return f.as_dict()

    def add_category(self, name: str, id: int | None = None, idnumber: str = "", parent: int = 0,
                     visible: int = 1) -> int:
        with self.lock:
            if not str(name).strip():
                raise ValueError("a category needs a name")
            if parent and parent not in self.categories:
                raise ValueError(f"no category {parent}")
            cid = self._take_id("category", self.categories, id)
            self.categories[cid] = Category(cid, str(name), str(idnumber), int(parent), int(visible))
            return cid

    def add_course(self, fullname: str, shortname: str, categoryid: int, visible: int = 1, id: int | None = None,
                   idnumber: str = "", summary: str = "", format: str = "topics") -> int:
        with self.lock:
            if not str(fullname).strip() or not str(shortname).strip():
                raise ValueError("a course needs a fullname and a shortname")
            if int(categoryid) not in self.categories:
                raise ValueError(f"no category {categoryid}")
            if any(c.shortname == shortname for c in self.courses.values()):
                raise ValueError(f"shortname {shortname!r} is taken")
            cid = self._take_id("course", self.courses, id)
            self.courses[cid] = Course(cid, int(categoryid), str(fullname), str(shortname), idnumber=str(idnumber),
                                       summary=str(summary), format=str(format), visible=int(visible))
            return cid

    def add_user(self, username: str, firstname: str = "Test", lastname: str = "User", email: str | None = None,
                 password: str | None = None, idnumber: str = "", auth: str = "manual", suspended: int = 0,
                 id: int | None = None) -> int:
        with self.lock:
            if not username or username != username.lower():
                raise ValueError("usernames are non-empty and lower case")
            if self.user_by_username(username) is not None:
                raise ValueError(f"username {username!r} is taken")
            uid = self._take_id("user", self.users, id)
            self.users[uid] = User(uid, username, str(firstname), str(lastname), email or f"{username}@example.com",
                                   auth=auth, password=hash_password(password) if password else "",
                                   idnumber=str(idnumber), suspended=int(suspended))
            return uid

    def enrol(self, userid: int, courseid: int, roleid: int = 5) -> None:
        """Enrol a user with a role straight away (no checks a web service call would make, beyond existence)."""
        with self.lock:
            course = self.courses.get(int(courseid))
            if course is None or int(userid) not in self.users or int(roleid) not in ROLES:
                raise ValueError("unknown course, user or role")
            enrolment = course.enrolments.setdefault(int(userid), Enrolment(int(userid)))
            if int(roleid) not in enrolment.roles:
                enrolment.roles.append(int(roleid))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "categories": [self._category_dict(c) for c in sorted(self.categories.values(), key=lambda c: c.id)],
                "courses": [self._course_dict(c) for c in sorted(self.courses.values(), key=lambda c: c.id)],
                "users": [self._user_dict(u) for u in sorted(self.users.values(), key=lambda u: u.id) if not u.deleted],
                "deleted_users": [self._user_dict(u) for u in sorted(self.users.values(), key=lambda u: u.id)
                                  if u.deleted],
                "config": self.config.as_dict(),
                "faults": self.faults.as_dict(),
            }

    # ---- used by the functions --------------------------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        with self.lock:
            value = self._next[kind]
            self._next[kind] = value + 1
            return value

    def user_by_username(self, username: str) -> User | None:
        return next((u for u in self.users.values() if u.username == username), None)

    def live_user(self, userid: int) -> User | None:
        user = self.users.get(userid)
        return user if user is not None and not user.deleted else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A delegated transaction: an exception rolls every record back (sequences excepted)."""
        with self.lock:
            saved = copy.deepcopy((self.categories, self.courses, self.users))
            try:
                yield
            except BaseException:
                self.categories, self.courses, self.users = saved
                raise

    def decide_faults(self) -> FaultDecision:
        """Draw this request's injected faults (seedable, so a run can be replayed)."""
        with self.lock:
            f = self.faults
            decision = FaultDecision(latency=f.latency)
            if f.drop_rate > 0 and self.rng.random() < f.drop_rate:
                decision.drop = f.drop_phase
            elif self.error_plan.hit():
                decision.error = f.kinds[(self.error_plan.hits - 1) % len(f.kinds)]
            elif f.error_rate > 0 and self.rng.random() < f.error_rate:
                decision.error = self.rng.choice(f.kinds)
            return decision

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _take_id(self, kind: str, table: dict[int, Any], wanted: int | None) -> int:
        if wanted is None:
            value = self._next[kind]
            while value in table:
                value += 1
        else:
            value = int(wanted)
            if value < 1 or value in table:
                raise ValueError(f"{kind} id {value} is taken or invalid")
        self._next[kind] = max(self._next[kind], value + 1)
        return value

    def _category_dict(self, c: Category) -> dict[str, Any]:
        count = sum(1 for course in self.courses.values() if course.category == c.id)
        return {"id": c.id, "name": c.name, "idnumber": c.idnumber, "parent": c.parent, "visible": c.visible,
                "coursecount": count}

    def _course_dict(self, c: Course) -> dict[str, Any]:
        # roleid: the first role assigned (the one enrol_manual_enrol_users gave); roleids: all of them
        enrolments = [{"userid": e.userid, "roleid": e.roles[0] if e.roles else None, "roleids": list(e.roles),
                       "roles": [ROLES[r].shortname for r in e.roles], "status": e.status,
                       "timestart": e.timestart, "timeend": e.timeend}
                      for e in sorted(c.enrolments.values(), key=lambda e: e.userid)]
        return {"id": c.id, "categoryid": c.category, "fullname": c.fullname, "shortname": c.shortname,
                "idnumber": c.idnumber, "visible": c.visible, "format": c.format, "restoring": c.restoring,
                "timecreated": c.timecreated, "timemodified": c.timemodified, "enrolments": enrolments}

    @staticmethod
    def _user_dict(u: User) -> dict[str, Any]:
        return {"id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
                "email": u.email, "auth": u.auth, "idnumber": u.idnumber, "suspended": u.suspended,
                "deleted": u.deleted, "has_password": bool(u.password)}


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def _rate(name: str, value: float) -> float:
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be within 0..1")
    return value
