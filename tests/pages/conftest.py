"""Pages in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright for Python,
against the system as `make dev` runs it: the backend and a worker-all as their own processes, the
simulators of Proxmox, Guacamole, Moodle and a mail catcher over their real protocols, this
machine's Redis and MariaDB (or the embedded defaults, as the rest of the suite).

The system is started once per test module (each test makes its own users and events, so tests do
not see each other's); every test gets fresh browser contexts, one per logged-in user.
Screenshots: `shot(page, name)` saves under the test's tmp dir; `shot(page, name, readme=True)`
also refreshes docs/screenshots/<name>.png, which the README shows, when OPENVLE_REFRESH_SCREENSHOTS=1
(an ordinary run never changes tracked files).
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from conftest import ROOT, RoleProcess, Stores, _flush, _use, wait_for
from helpers import sandbox_env
from sandbox.guacamole import GuacamoleSimulator
from sandbox.mail import MailCatcher
from sandbox.moodle import MoodleSimulator
from sandbox.proxmox import ProxmoxSimulator
from sandbox.runner import seed_proxmox
from test_backend import free_port

CHROMIUM = os.environ.get("OPENVLE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 860}
# Proxmox's tasks take this long in the simulator (seconds): long enough to see "Stopping…", short
# enough for a quick suite.
DURATIONS = {"linked_clone": 1.0, "full_clone": 3.0, "start": 0.5, "stop": 0.5, "shutdown": 0.5, "reset": 0.3,
             "reboot": 0.5, "destroy": 0.3, "migrate": 0.5}
PASSWORD = "page-test-pass-1"
# Every wait in a page test (Playwright's expect and actions) is for a condition; the bound only
# matters when it never comes, so it is generous and scaled like the suite's other waits.
WAIT_MS = 20_000 * float(os.environ.get("OPENVLE_TEST_WAIT_SCALE", "3"))


@dataclass
class System:
    url: str
    env: dict[str, str]
    sims: dict
    roles: list[RoleProcess] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(f"--- {r.role}\n{r.output[-4000:]}" for r in self.roles)


def _simulators() -> dict:
    token = str(uuid.uuid4())
    pve = ProxmoxSimulator(host="127.0.0.1", port=0, user="openvle@pve", token_name="pages", token_value=token,
                           auth_fail_delay=0).start()
    sims = {"pve": pve,
            "guac": GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin", password="guac-pass-1").start(),
            "moodle": MoodleSimulator(host="127.0.0.1", port=0, token="moodle-token-1", duplicate_seconds=0.5).start(),
            "mail": MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0).start()}
    seed_proxmox(pve.state)
    pve.state.configure(durations=DURATIONS, storage_concurrency=4, lock_wait=0.5)
    sims["moodle"].state.seed()
    return sims


def _empty_tables() -> None:
    from openvle.db.engine import session_scope
    from openvle.db.models import Base

    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))


@pytest.fixture(scope="module")
def system(stores: Stores, tmp_path_factory) -> Iterator[System]:
    """The dev system (backend + worker-all, as `make dev` starts them) on the simulators."""
    sims = _simulators()
    env = sandbox_env(sims)
    _use(stores, **env)
    _flush(stores)
    _empty_tables()
    port = free_port()
    logs = tmp_path_factory.mktemp("roles")
    running = System(url=f"http://127.0.0.1:{port}", env=env, sims=sims)
    try:
        backend = RoleProcess("backend", stores.env(**env, BACKEND_PORT=str(port), DEV_MODE="true"),
                              logs / "backend.log")
        running.roles.append(backend)
        running.roles.append(RoleProcess("worker-all", stores.env(**env), logs / "worker-all.log"))

        def up():
            try:
                return httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, "the backend to answer", backend)
        wait_for(lambda: stores.redis.scard("rq:workers") >= 1, 30, "worker-all to register", running.roles[1])
        yield running
    finally:
        for role in running.roles:
            role.stop()
        for sim in sims.values():
            sim.stop()
        _use(stores)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless; never a browser Playwright would download."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test of this run uses (tests share the module's database)."""
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}"


@pytest.fixture
def make_user(system: System) -> Callable[..., str]:
    """An account that can log in: make_user("student") -> its user name (password PASSWORD)."""
    from openvle.accounts.users import create_user

    def make(role: str = "student", username: str | None = None) -> str:
        name = username or unique(role)
        create_user(name, f"{name}@uni.example", role, first_name=role.title(), last_name=name, password=PASSWORD)
        return name

    return make


@pytest.fixture
def open_browser(browser, system: System, tmp_path: Path):
    """A fresh browser context (its own cookies) on the system: open_browser(phone=True)."""
    contexts = []

    def open_(phone: bool = False):
        context = browser.new_context(base_url=system.url, viewport=PHONE if phone else DESKTOP,
                                      device_scale_factor=1)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def login(open_browser, make_user):
    """A page logged in through the login form: login("teacher") -> (page, user name); pass
    username= to log in as someone who exists already."""

    def log_in(role: str = "student", username: str | None = None, phone: bool = False, password: str = PASSWORD):
        name = username or make_user(role)
        page = open_browser(phone=phone)
        page.goto("/login")
        page.get_by_label("User name or email").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return page, name

    return log_in


@pytest.fixture
def shot(request, tmp_path: Path):
    """Save a screenshot: always under the test's tmp dir; with readme=True also as
    docs/screenshots/<name>.png (the README's pictures) when OPENVLE_REFRESH_SCREENSHOTS=1."""

    def save(page, name: str, readme: bool = False, full_page: bool = True) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if readme and os.environ.get("OPENVLE_REFRESH_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
        return path

    return save


@pytest.fixture(autouse=True)
def _system_logs_on_failure(request):
    """A failed page test prints the roles' last log lines: the browser alone rarely says why."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "system" in request.fixturenames:
        print(request.getfixturevalue("system").logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
