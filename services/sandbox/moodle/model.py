"""The site's records (categories, courses with their manual enrolments, users), the standard roles, the
site's version, and the settings and faults the simulator can be given."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

VERSION = "2024100700"  # $CFG->version of 4.5.0, also the version of the plugins shipped with it
RELEASE = "4.5 (Build: 20241007)"
THEMEREV = 1728290000  # in profile image URLs, as theme/image.php builds them

SITEID = 1
GUEST_ID = 1
ADMIN_ID = 2  # the token's user: a site admin, as the usual integration setup has it


@dataclass(frozen=True)
class Role:
    id: int
    shortname: str
    sortorder: int


# A fresh install's roles; standard roles keep an empty `name` in the role table (the UI shows lang strings).
ROLES: dict[int, Role] = {r.id: r for r in (
    Role(1, "manager", 1), Role(2, "coursecreator", 2), Role(3, "editingteacher", 3), Role(4, "teacher", 4),
    Role(5, "student", 5), Role(6, "guest", 6), Role(7, "user", 7), Role(8, "frontpage", 8),
)}
COURSE_ASSIGNABLE = (1, 3, 4, 5)  # roles with the course context level, assignable there by an admin
CONTACT_ROLES = (3,)  # $CFG->coursecontact


def now() -> int:
    return int(time.time())


@dataclass
class Category:
    id: int
    name: str
    idnumber: str = ""
    parent: int = 0
    visible: int = 1
    description: str = ""
    timemodified: int = field(default_factory=now)


@dataclass
class Enrolment:
    """A user_enrolments row of the course's manual instance plus the user's role assignments in the course."""

    userid: int
    status: int = 0  # ENROL_USER_ACTIVE; 1 = suspended
    timestart: int = 0
    timeend: int = 0
    roles: list[int] = field(default_factory=list)
    timecreated: int = field(default_factory=now)

    def active(self, at: int) -> bool:
        return self.status == 0 and self.timestart <= at and (self.timeend == 0 or self.timeend > at)


def _startdate() -> int:
    t = time.localtime(time.time() + 86400)  # a new course starts tomorrow at midnight
    return int(time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1)))


@dataclass
class Course:
    id: int
    category: int
    fullname: str
    shortname: str
    idnumber: str = ""
    summary: str = ""
    summaryformat: int = 1
    format: str = "topics"
    visible: int = 1
    startdate: int = field(default_factory=_startdate)
    enddate: int = 0
    showgrades: int = 1
    newsitems: int = 5
    maxbytes: int = 0
    showreports: int = 0
    groupmode: int = 0
    groupmodeforce: int = 0
    defaultgroupingid: int = 0
    enablecompletion: int = 1
    completionnotify: int = 0
    lang: str = ""
    theme: str = ""
    marker: int = 0
    legacyfiles: int = 0
    calendartype: str = ""
    requested: int = 0
    showactivitydates: int = 1
    showcompletionconditions: int = 1
    hiddensections: int = 1  # course format options of "topics"
    coursedisplay: int = 0
    timecreated: int = field(default_factory=now)
    timemodified: int = field(default_factory=now)
    cacherev: int = field(default_factory=now)
    manual_enrol: bool = True  # the course has an enabled manual enrolment instance (the site course has none)
    restoring: bool = False  # created by a duplicate whose restore has not finished
    enrolments: dict[int, Enrolment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.enddate and self.format != "site":
            self.enddate = self.startdate + 365 * 86400  # courseenddateenabled, one year


@dataclass
class User:
    id: int
    username: str
    firstname: str
    lastname: str
    email: str
    auth: str = "manual"
    password: str = ""  # a hash; "" = none (createpassword, or an external auth)
    idnumber: str = ""
    lang: str = "en"
    timezone: str = "99"
    theme: str = ""
    calendartype: str = "gregorian"
    mailformat: int = 1
    maildisplay: int = 2
    city: str = ""
    country: str = ""
    description: str | None = None
    institution: str = ""
    department: str = ""
    phone1: str = ""
    phone2: str = ""
    address: str = ""
    suspended: int = 0
    confirmed: int = 1
    deleted: int = 0
    firstaccess: int = 0
    lastaccess: int = 0
    trackforums: int = 0
    timecreated: int = field(default_factory=now)
    timemodified: int = field(default_factory=now)

    @property
    def fullname(self) -> str:
        return f"{self.firstname} {self.lastname}"


@dataclass
class SimConfig:
    duplicate_seconds: float = 2.0  # how long core_course_duplicate_course's backup+restore takes
    debug: bool = True  # debugging on: errors carry debuginfo (as the reference shows them)
    password_policy: bool = True  # $CFG->passwordpolicy, on in a fresh install: 8 chars, digit, lower, upper, other
    rest_enabled: bool = True  # the REST protocol; off answers 403 with an empty body
    max_input_vars: int = 5000  # PHP drops request variables past this (Moodle requires >= 5000)
    sitename: str = "OpenVLE Moodle Sandbox"

    def as_dict(self) -> dict:
        return asdict(self)


FAULT_KINDS = ("dml", "http503")


@dataclass
class Faults:
    error_rate: float = 0.0
    error_every: int = 0  # exact plan: every n-th request fails, cycling through `kinds` (sandbox/faults.py)
    latency: float = 0.0
    drop_rate: float = 0.0
    drop_phase: str = "before"  # "before": the request is lost; "after": it runs, the answer is lost
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        return d
