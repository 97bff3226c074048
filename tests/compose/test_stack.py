"""The compose stack for real: our image and compose/docker-compose.yml under podman, driven by the
real Compose binary, checked for what an operator relies on (README "Running with Docker Compose").

Stand-ins: the python, redis and mariadb base images are built from Debian packages (no registry
here) and labelled as such; MongoDB cannot run here, so the stack runs without it (no MONGO_URL);
the outside systems are the sandbox's simulators as a compose service. tests/compose/stand-in.yml
says why each of those swaps is made. They prove our Dockerfile, compose file, roles,
healthchecks, scaling and logs, not the upstream images.

Run it with `make test-compose` (CI runs it after `make test`). The tests share one stack and run
in file order, each leaving it up and healthy for the next; timings are printed as they come.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import stack

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

APP_SERVICES = ("backend", "scheduler", "worker", "worker-vm-clone", "worker-periodic", "sandbox")
STORES = ("redis", "mariadb")
WORKER_ROLES = ("worker", "worker-vm-clone", "worker-periodic")
RUNTIME_UID = "10001"   # docker/Dockerfile USER
FIRST_SYNC_INTERVAL = 5    # WORKER_PVE_PERIODIC_INTERVAL at first; the .env test raises it
CHANGED_SYNC_INTERVAL = 15
CLONE_SECONDS = 15          # the Proxmox simulator's linked clone time: long enough to kill one mid-way
HEALTHY_TIMEOUT = 420       # up to all healthy takes ~100 s here (three 30 s healthcheck intervals)


@dataclass
class Stack:
    compose: stack.Compose
    ticker: stack.HealthTicker
    say: callable
    timings: dict[str, float] = field(default_factory=dict)
    token: str | None = None  # an admin's API token, made with the CLI as an operator would

    # --- reaching the stack ------------------------------------------------------------------
    def container(self, service: str) -> str:
        found = self.compose.containers(service)
        assert found, f"no running {service} container"
        return found[0]["Names"][0]

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """`openvle ...` inside the backend container, as an operator runs it with `docker exec`."""
        return stack.podman("exec", "-i", self.container("backend"), "openvle", *args, input=stdin,
                            check=False, timeout=timeout)

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        port = self.compose.port("backend", 8000)
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, timeout=30, **kwargs)

    def tasks(self, **query: str) -> list[dict]:
        response = self.api("GET", "/api/tasks", params={"limit": "500", **query})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def task(self, task_id: int) -> dict:
        response = self.api("GET", f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def sandbox(self, port: int, path: str, body: dict | None = None) -> dict:
        """The simulators' admin API (/_sandbox/...), through the sandbox's published ports."""
        published = self.compose.port("sandbox", port)
        scheme = "https" if port == 8006 else "http"
        url = f"{scheme}://127.0.0.1:{published}{path}"
        response = httpx.request("POST" if body is not None else "GET", url, json=body, verify=False, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def proxmox(self) -> dict:
        return self.sandbox(8006, "/_sandbox/state")

    def wait_healthy(self, since: float, label: str, services: set[str] | None = None) -> float:
        healthy = self.ticker.wait_healthy(HEALTHY_TIMEOUT, services)
        self.timings[label] = healthy - since
        self.say(f"{label}: {healthy - since:.0f} s")
        return healthy

    def up(self, *args: str, label: str) -> None:
        started = time.time()
        self.compose.run("up", "-d", *args, timeout=HEALTHY_TIMEOUT + 300)
        self.wait_healthy(started, label)


def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One compose test per machine: the worker containers have fixed names."""
    with open(Path(tempfile.gettempdir()) / "openvle-compose-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def live(request) -> Iterator[Stack]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\ncompose | {line}", flush=True)

    began = time.monotonic()
    timings: dict[str, float] = {}
    with machine_lock(), tempfile.TemporaryDirectory(prefix="openvle-stack-") as tmp:
        directory = Path(tmp)
        stack.ensure_packages(say)
        started = time.monotonic()
        built = stack.ensure_stand_ins(say)
        timings["stand-in images" + (" (built)" if built else " (reused)")] = time.monotonic() - started
        with stack.podman_service(directory) as docker_host:
            timings["our image build"] = stack.build_image(docker_host, say)
            total, ours = stack.image_size_mb()
            say(f"image {stack.IMAGE}: {total:.0f} MB, of which {ours:.0f} MB above the (stand-in) python base")
            compose = stack.Compose(docker_host, directory)
            compose.run("down", "-v", "--remove-orphans", timeout=300)  # what a crashed earlier run left
            compose.set_env(
                MARIADB_PASSWORD=secrets.token_hex(12), MARIADB_ROOT_PASSWORD=secrets.token_hex(12),
                REDIS_PASSWORD=secrets.token_urlsafe(18), MONGO_PASSWORD=secrets.token_urlsafe(18),
                SECRET_KEY=secrets.token_urlsafe(32),
                WORKER_PVE_PERIODIC_INTERVAL=str(FIRST_SYNC_INTERVAL),
                # The demo Task endpoint (admins, DEV_MODE only) gives jobs of a chosen length for
                # the scaling and warm-shutdown checks.
                DEV_MODE="true",
            )
            with stack.HealthTicker(compose) as ticker:
                live = Stack(compose, ticker, say, timings)
                try:
                    live.up(label="up to all healthy")
                    first_admin_token(live)
                    yield live
                finally:
                    compose.run("down", "-v", "--remove-orphans", timeout=600, check=False)
                    timings["whole compose test"] = time.monotonic() - began
                    say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))


def first_admin_token(live: Stack) -> None:
    """What an operator does once the stack is up: the first admin, then a token for scripts."""
    created = live.cli("user", "create", "--admin", "compose-ops")
    assert created.returncode == 0, created.stderr
    made = live.cli("token", "create", "--user", "compose-ops", "--name", "compose-test", "--days", "1")
    assert made.returncode == 0, made.stderr
    live.token = made.stdout.strip().splitlines()[0]
    assert live.api("GET", "/api/me").json()["username"] == "compose-ops"


# --- the stack comes up ----------------------------------------------------------------------------

def test_every_service_healthy_in_dependency_order(live):
    """Stores (and the simulators) first, then the backend that migrates the schema, then the
    scheduler and the workers: each started only after what it depends on had passed a check."""
    containers = {c["Labels"]["com.docker.compose.service"]: c for c in live.compose.containers()}
    assert set(containers) == set(STORES) | set(APP_SERVICES), sorted(containers)
    assert "mongodb" not in containers  # parked: no MongoDB here
    by_service: dict[str, list[dict]] = {}
    for c in live.compose.containers():
        by_service.setdefault(c["Labels"]["com.docker.compose.service"], []).append(c)
    assert len(by_service["worker"]) == 4

    def started(service: str) -> float:
        return min(stack._parse_time(live.compose.inspect(c["Id"])["State"]["StartedAt"]) for c in by_service[service])

    def healthy(service: str) -> float:
        return max(live.ticker.healthy_since[c["Id"]] for c in by_service[service])

    origin = min(started(s) for s in by_service)
    for service in sorted(by_service, key=started):
        live.say(f"  {service:<16} started +{started(service) - origin:5.1f} s, "
                 f"healthy +{healthy(service) - origin:5.1f} s ({len(by_service[service])} container(s))")
    for store in (*STORES, "sandbox"):
        assert started("backend") >= healthy(store), f"backend started before {store} was healthy"
    for service in ("scheduler", *WORKER_ROLES):
        assert started(service) >= healthy("backend"), f"{service} started before the backend was healthy"


def test_app_containers_run_as_non_root_on_a_read_only_root(live):
    for service in APP_SERVICES:
        for container in live.compose.containers(service):
            name = container["Names"][0]
            assert stack.podman("exec", name, "id", "-u").stdout.strip() == RUNTIME_UID, name
            assert live.compose.inspect(name)["HostConfig"]["ReadonlyRootfs"] is True, name
            denied = stack.podman("exec", name, "touch", "/app/written", check=False)
            assert denied.returncode != 0 and "Read-only file system" in denied.stderr, (name, denied.stderr)
            stack.podman("exec", name, "touch", "/tmp/written")  # the tmpfs for Python's temporary files


# --- an event through the stack ---------------------------------------------------------------------

TEMPLATE = """\
name: stack-test
pve_vmid: 9001
node: pve1
clone_mode: linked
protocol: rdp
moodle_course_id: 2
"""

EVENT = """\
name: Stack Test Lab
template: stack-test
start: {start}
end: {end}
participants:
  - {{username: stack01, email: stack01@uni.example, first_name: Ada, last_name: One}}
  - {{username: stack02, email: stack02@uni.example, first_name: Bob, last_name: Two}}
  - {{username: stack03, email: stack03@uni.example, first_name: Cy, last_name: Three}}
  - {{username: stack04, email: stack04@uni.example, first_name: Di, last_name: Four}}
teachers:
  - {{username: teach01, email: teach01@uni.example, first_name: Tea, last_name: Cher}}
"""
PARTICIPANTS = 4


def ours(state: dict) -> list[dict]:
    """The VMs this system made (its tag), templates excluded."""
    return [vm for vm in state["vms"] if not vm["template"] and "openvle" in (vm["tags"] or "")]


def test_event_deploys_and_archives_through_the_stack_surviving_a_killed_clone_worker(live):
    """A 4-person event deploys against the simulators; worker-vm-clone is SIGKILLed while clones
    run and started again; the event still settles deployed with one VM per participant (none
    cloned twice), its Tasks show through the API, and archiving leaves no VM behind."""
    began = time.monotonic()
    live.sandbox(8006, "/_sandbox/config", {"durations": {"linked_clone": CLONE_SECONDS}})
    created = live.cli("template", "create", "-f", "-", stdin=TEMPLATE)
    assert created.returncode == 0, created.stderr
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    created = live.cli("event", "create", "-f", "-", stdin=EVENT.format(
        start=start.isoformat(timespec="seconds"), end=(start + dt.timedelta(hours=8)).isoformat(timespec="seconds")))
    assert created.returncode == 0, created.stderr
    event_id = created.stdout.strip().splitlines()[-1]
    assert event_id.isdigit(), created.stdout

    asked = live.cli("event", "deploy", event_id)
    assert asked.returncode == 0, asked.stdout + asked.stderr

    def cloning() -> bool:
        return any(t["type"] == "qmclone" and t["status"] == "running" for t in live.proxmox()["tasks"])

    wait_for(cloning, 180, "a clone running on the Proxmox simulator")
    live.compose.run("kill", "-s", "KILL", "worker-vm-clone")
    live.say("worker-vm-clone SIGKILLed with a clone running")
    started = time.time()  # the health ticker's clock
    live.compose.run("start", "worker-vm-clone")
    # As an operator would, wait for it to come back healthy before asking anything more. Here that
    # also outlasts podman's DNS reload: a container starting makes aardvark-dns tear down and set up
    # its records again (SIGHUP), and a name asked meanwhile is "not known" (CI met it once).
    live.wait_healthy(started, "worker-vm-clone started again to healthy", {"worker-vm-clone"})

    # The deploy may have settled meanwhile (asking `event deploy --wait` again would then be refused):
    # follow the event through the API, as its page does.
    def settled() -> dict | None:
        response = live.api("GET", f"/api/events/{event_id}")
        assert response.status_code == 200, response.text
        event = response.json()
        return event if event["status"] != "deploying" else None

    event = wait_for(settled, 600, "the event's deploy settled")
    assert event["status"] == "deployed", event
    live.timings["event deploy (4 people, one clone worker killed)"] = time.monotonic() - began

    state = live.proxmox()
    vms = ours(state)
    assert len(vms) == PARTICIPANTS and len({vm["name"] for vm in vms}) == PARTICIPANTS, vms
    clones = [t for t in state["tasks"] if t["type"] == "qmclone" and t["exitstatus"] == "OK"]
    assert len(clones) == PARTICIPANTS, f"{len(clones)} clones made for {PARTICIPANTS} participants"
    assert all(vm["status"] == "running" for vm in vms), vms

    clone_tasks = [t for t in live.tasks(operation="vm.clone") if t["target"]]
    assert len(clone_tasks) == PARTICIPANTS and {t["status"] for t in clone_tasks} == {"success"}, clone_tasks
    detail = live.task(clone_tasks[0]["id"])
    assert detail["subtasks"] and detail["subtasks"][-1]["status"] == "success", detail
    assert detail["subtasks"][-1]["worker"].startswith("worker-vm-clone@"), detail["subtasks"]
    [deploy] = [t for t in live.tasks(operation="event.deploy") if t["target"] == f"event:{event_id}"]
    assert deploy["status"] == "success", deploy
    caught = live.sandbox(8025, "/_sandbox/state")
    assert caught["messages"] >= PARTICIPANTS, caught

    # The clone worker's log tells each clone's story: role, queue, job, task and attempt.
    log = live.compose.run("logs", "--no-color", "worker-vm-clone").stdout
    # ... and its restart after the kill is clean (its old name may still be registered in Redis).
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
    # The container started again knew its killed worker at once, by the life note it left (issue 17).
    assert re.search(r"workers that left a life note in \S+ and are gone: worker-vm-clone@", log), log[-3000:]
    for task in clone_tasks:
        pattern = (rf"role=worker-vm-clone queue=pve_vm_clone job={task['rq_job_id']} task={task['id']} "
                   rf"attempt=\d+/\d+ \S+: vm\.clone")
        assert re.search(pattern, log), f"no line for task {task['id']} in `compose logs worker-vm-clone`"

    began = time.monotonic()
    archived = live.cli("event", "archive", event_id, "--wait", "--timeout", "600", timeout=660)
    assert archived.returncode == 0, archived.stdout[-3000:] + archived.stderr
    live.timings["event archive"] = time.monotonic() - began
    assert ours(live.proxmox()) == [], "archiving left VMs behind"
    connections = live.sandbox(8080, "/guacamole/_sandbox/state")
    assert not connections.get("connections"), connections


def test_docker_logs_of_worker_periodic_show_the_node_syncs(live):
    log = stack.podman("logs", "openvle-worker-periodic").stdout  # `docker logs openvle-worker-periodic`
    synced = re.findall(r"role=worker-periodic queue=pve_periodic job=\S+ task=\d+ attempt=1/\d+ \S+: "
                        r"nodes\.sync succeeded", log)
    assert len(synced) >= 2, log[-3000:]


# --- scaling and stopping -------------------------------------------------------------------------

def worker_names(live: Stack, prefix: str) -> list[str]:
    response = live.api("GET", "/api/workers")
    assert response.status_code == 200, response.text
    return [w["name"] for w in response.json() if w["name"].startswith(prefix)]


def demo_tasks(live: Stack, count: int, seconds: float) -> list[int]:
    ids = []
    for _ in range(count):
        response = live.api("POST", "/api/tasks/demo", json={"queue": "moodle", "duration": seconds})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def wait_processing(live: Stack, ids: list[int], timeout: float = 120) -> None:
    wait_for(lambda: all(live.task(i)["status"] == "processing" for i in ids), timeout,
             f"tasks {ids} processing")


def assert_finished_in_one_attempt(live: Stack, ids: list[int]) -> None:
    for task_id in ids:
        task = wait_for(lambda i=task_id: (t := live.task(i))["status"] in ("success", "error") and t, 120,
                        f"task {task_id} finished")
        assert task["status"] == "success" and len(task["subtasks"]) == 1, task


# `--no-recreate`: podman 4.3.1 reports container networks by name where Compose compares ids, so
# every `up` would otherwise recreate every running container (not so on Docker).
def test_scale_to_eight_workers_and_back_to_four_with_a_warm_shutdown(live):
    began = time.time()
    live.compose.run("up", "-d", "--no-recreate", "--scale", "worker=8", timeout=HEALTHY_TIMEOUT)
    live.wait_healthy(began, "scale worker=8 to healthy", {"worker"})
    containers = live.compose.containers("worker")
    assert len(containers) == 8
    hosts = {c["Id"][:12] for c in containers}  # a container's host name is its short id
    names = wait_for(lambda: len(n := worker_names(live, "worker@")) == 8 and n, 60, "8 workers registered")
    assert {n.split("@")[1].split(".")[0] for n in names} == hosts, names
    redis_password = live.compose.env_value("REDIS_PASSWORD")
    info = stack.podman("exec", live.container("backend"), "rq", "info", "--url",
                        f"redis://:{redis_password}@redis:6379/0").stdout
    assert sum(1 for host in hosts if re.search(rf"worker@{host}\.\d+", info)) == 8, info

    # Every worker busy, then four of them stopped: each finishes its job first (warm shutdown).
    ids = demo_tasks(live, 8, 20)
    wait_processing(live, ids)
    began = time.monotonic()
    live.compose.run("up", "-d", "--no-recreate", "--scale", "worker=4", timeout=600)
    live.timings["scale worker=4 (warm: running jobs finish)"] = time.monotonic() - began
    assert len(live.compose.containers("worker")) == 4
    assert_finished_in_one_attempt(live, ids)
    assert len(worker_names(live, "worker@")) == 4  # the four stopped ones deregistered on their way out


@contextlib.contextmanager
def second_host_worker(live: Stack) -> Iterator[str]:
    """Our image run by hand, outside compose, on the host's network as another machine would: it
    is given only the Redis and database URLs and SECRET_KEY (README, "Beyond one host")."""
    env = dict(line.split("=", 1) for line in live.compose.env_file.read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    redis_port, db_port = live.compose.port("redis", 6379), live.compose.port("mariadb", 3306)
    name = "openvle-second-host-worker"
    stack.podman("rm", "-f", name, check=False)
    stack.podman(
        "run", "-d", "--name", name, "--hostname", "second-host", "--network", "host",
        "--read-only", "--tmpfs", "/tmp", "--stop-timeout", "3900",
        "-e", "SERVICE_ROLE=worker", "-e", f"REDIS_URL=redis://:{env['REDIS_PASSWORD']}@127.0.0.1:{redis_port}/0",
        "-e", f"DATABASE_URL=mysql+pymysql://openvle:{env['MARIADB_PASSWORD']}@127.0.0.1:{db_port}/openvle",
        "-e", f"SECRET_KEY={env['SECRET_KEY']}",  # the same key as the compose workers: the same credentials
        stack.IMAGE)
    try:
        wait_for(lambda: worker_names(live, "worker@second-host."), 120, "the second host's worker registered")
        assert stack.podman("healthcheck", "run", name, check=False).returncode == 0
        yield name
    finally:
        stack.podman("rm", "-f", name, check=False)


def test_stop_worker_mid_job_exits_zero_while_a_second_host_worker_carries_on(live):
    """`docker compose stop worker` with a job running: the job finishes, every worker container
    exits 0. Meanwhile a worker on a "second host" (same image, no compose) takes the next job."""
    [running] = demo_tasks(live, 1, 15)
    wait_processing(live, [running])
    with second_host_worker(live) as other_host:
        containers = [c["Names"][0] for c in live.compose.containers("worker")]
        live.compose.run("stop", "worker", timeout=600)
        for name in containers:
            state = live.compose.inspect(name)["State"]
            if state["Status"] != "exited" or state["ExitCode"] != 0:
                logs = stack.podman("logs", "--tail", "40", name, check=False)
                raise AssertionError(f"{name} did not exit 0 on stop: {state}\n{logs.stdout}{logs.stderr}")
        assert_finished_in_one_attempt(live, [running])
        assert not live.task(running)["subtasks"][0]["worker"].startswith("worker@second-host.")

        [carried] = demo_tasks(live, 1, 0)  # only the second host's worker is left on its queue
        assert_finished_in_one_attempt(live, [carried])
        assert live.task(carried)["subtasks"][0]["worker"].startswith("worker@second-host."), live.task(carried)
        stack.podman("stop", other_host, timeout=120)
        assert live.compose.inspect(other_host)["State"]["ExitCode"] == 0
    began = time.time()
    live.compose.run("start", "worker")
    live.wait_healthy(began, "start worker to healthy", {"worker"})


# --- configuration and data -----------------------------------------------------------------------

def sync_gaps(live: Stack, after: dt.datetime) -> list[float]:
    created = sorted(dt.datetime.fromisoformat(t["created_at"].replace("Z", "+00:00"))
                     for t in live.tasks(operation="nodes.sync"))
    created = [c for c in created if c >= after]
    return [(b - a).total_seconds() for a, b in zip(created, created[1:], strict=False)]


def test_changing_the_sync_interval_in_env_and_up_takes_effect(live):
    # A sync's Task is made when worker-periodic takes its tick, which may wait behind the previous
    # sync: one gap can be seconds short or long. The mean over several gaps cannot drift past the
    # midpoint between the two intervals unless the interval in force is the other one.
    midpoint = (FIRST_SYNC_INTERVAL + CHANGED_SYNC_INTERVAL) / 2
    before = sync_gaps(live, dt.datetime.min.replace(tzinfo=dt.UTC))
    assert len(before) >= 3 and statistics.mean(before) < midpoint, before  # the first interval was in force
    live.compose.set_env(WORKER_PVE_PERIODIC_INTERVAL=str(CHANGED_SYNC_INTERVAL))
    live.up(label="up -d after a .env change to healthy")
    changed = dt.datetime.now(dt.UTC)
    gaps = wait_for(lambda: len(g := sync_gaps(live, changed)) >= 3 and g, 5 * CHANGED_SYNC_INTERVAL + 60,
                    "three node sync gaps after the change")
    assert statistics.mean(gaps) > midpoint, gaps


def test_down_and_up_keep_queued_work_and_rows_and_down_v_removes_them(live):
    events_before = live.cli("event", "list").stdout
    assert "Stack Test Lab" in events_before
    live.compose.run("stop", "worker", timeout=600)  # nobody takes the job: it stays queued in Redis
    [queued] = demo_tasks(live, 1, 0)
    assert live.task(queued)["status"] == "queued"
    live.compose.run("down", timeout=600)
    assert live.compose.containers(all=True) == []
    live.up(label="down, then up to healthy")
    assert_finished_in_one_attempt(live, [queued])  # Redis kept the job (AOF), MariaDB the Task
    assert live.cli("event", "list").stdout == events_before

    volumes = {f"{live.compose.project}_{name}" for name in ("redis-data", "mariadb-data", "sandbox-ca")}
    present = set(stack.podman("volume", "ls", "--format", "{{.Name}}").stdout.split())
    assert volumes <= present, present
    live.compose.run("down", "-v", timeout=600)
    present = set(stack.podman("volume", "ls", "--format", "{{.Name}}").stdout.split())
    assert not volumes & present, present
    assert live.compose.containers(all=True) == []
