"""`openvle` / `python -m openvle`: run a role, migrate, show the configuration, check health; and
templates and events (`openvle template …`, `openvle event …`, cli_lab_events.py), accounts (`openvle user
…`, `openvle token …`, cli_accounts.py) and `openvle demo`."""

from __future__ import annotations

import argparse
import sys

from openvle import alerts
from openvle.cli_accounts import add_commands as add_account_commands
from openvle.cli_base import use_dev_redis
from openvle.cli_lab_events import add_commands as add_event_commands
from openvle.cli_lab_events import add_vm_commands
from openvle.roles import ROLES, UnknownRole, resolve
from openvle.settings import SettingsError, get_settings

EXIT_USAGE = 2
# The roles that read or write stored credentials (the backend migrates them; `worker` runs the
# guacamole and mails queues): they refuse to start without a usable SECRET_KEY.
CREDENTIAL_ROLES = ("backend", "worker", "worker-all")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openvle",
        description="OpenVLE Tasks. With no command, runs the role named by SERVICE_ROLE.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run a role (default: SERVICE_ROLE)")
    run.add_argument("role", nargs="?", help=f"one of {', '.join(ROLES)}")
    commands.add_parser("migrate", help="upgrade the database schema to the newest revision")
    config = commands.add_parser("config", help="print the effective settings, secrets masked")
    config.add_argument("--example", action="store_true", help="print .env.example instead")
    commands.add_parser("healthcheck", help="exit 0 when this container's role is healthy (Docker HEALTHCHECK)")
    commands.add_parser("dev", help="run backend, scheduler and worker-all locally with embedded defaults")
    keys = commands.add_parser("secrets", help="stored credentials: re-encrypt them under SECRET_KEY")
    keys.add_argument("action", choices=["rotate"],
                      help="rotate: re-encrypt every stored credential under SECRET_KEY (after it changed, with the "
                           "old key in SECRET_KEY_PREVIOUS); then SECRET_KEY_PREVIOUS can be emptied")
    add_event_commands(commands)
    add_vm_commands(commands)
    add_account_commands(commands)
    demo = commands.add_parser("demo", help="deploy a 10-person demo event on the dev system (starts it if needed)")
    demo.add_argument("--no-pause", action="store_true",
                      help="when the demo started the dev system itself, stop it at once instead of waiting "
                           "for Enter (the default on a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("template", "event", "vm", "demo", "user", "token"):
        use_dev_redis()  # REDIS_URL unset: the Redis of a `make dev` running in this directory, if any
    try:
        settings = get_settings()
    except SettingsError as exc:
        for line in exc.lines:
            print(f"openvle: {line}", file=sys.stderr)
        return EXIT_USAGE
    alerts.register()  # a Task this process sees fail for good (a role's, a command's) tells the admins

    command = args.command or "run"
    if command == "config" and args.example:
        from openvle.settings import Settings
        from openvle.settings_help import env_example

        sys.stdout.write(env_example(Settings))
        return 0
    if command == "config":
        print("# the settings of this shell's environment (and .env), secrets masked; a running `make dev`\n"
              "# gives its own processes an embedded REDIS_URL and the simulators' PVE_*, GUACAMOLE_*,\n"
              "# MOODLE_* and SMTP_* unless they are set here")
        for name, value in settings.public_items():
            print(f"{name}={value}")
        return 0

    if command in ("template", "event", "vm"):
        from openvle.cli_lab_events import run as run_event_command

        return run_event_command(args, settings)
    if command in ("user", "token"):
        from openvle.cli_accounts import run as run_account_command

        return run_account_command(args)
    if command == "demo":
        from openvle.demo import run as run_demo

        return run_demo(settings, pause=not args.no_pause)

    from openvle import logs

    role = getattr(args, "role", None) or settings.SERVICE_ROLE
    logs.setup(role or command, settings.LOG_LEVEL, settings.secrets())

    if command == "migrate":
        from openvle.credentials import SecretKeyError
        from openvle.db.engine import get_engine
        from openvle.db.schema import SchemaNotReady, upgrade

        try:
            before, after = upgrade(get_engine())
        except SecretKeyError as exc:  # stored passwords to encrypt, and no key to do it with
            print(f"openvle: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except SchemaNotReady as exc:  # another migration holds the lock
            print(f"openvle: {exc}", file=sys.stderr)
            return 1
        print(f"schema {'upgraded from ' + (before or 'empty') + ' to ' if before != after else 'already at '}{after}")
        return 0
    if command == "secrets":
        from openvle import credentials, guacamole_passwords

        try:
            count = guacamole_passwords.rotate_all()
        except (credentials.SecretKeyError, credentials.CannotDecrypt) as exc:
            print(f"openvle: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{count} stored credential(s) now encrypted under SECRET_KEY; SECRET_KEY_PREVIOUS can be emptied")
        return 0
    if command == "healthcheck":
        from openvle.healthcheck import check

        return check(settings)
    if command == "dev":
        from openvle.dev import run as run_dev

        return run_dev(settings)

    try:
        runner = resolve(role)
    except UnknownRole as exc:
        print(f"openvle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if role in CREDENTIAL_ROLES:
        from openvle import credentials

        try:
            credentials.check(settings)
        except credentials.SecretKeyError as exc:
            print(f"openvle: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return _run_role(runner, settings)


def _run_role(runner, settings) -> int:
    """Run a role; a store that is down or a schema that is behind is one clear line, not a traceback."""
    import logging

    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError

    from openvle.db.schema import SchemaNotReady

    log = logging.getLogger("openvle")
    try:
        return runner(settings)
    except SchemaNotReady as exc:
        log.error("cannot start: %s", exc)
    except RedisConnectionError as exc:
        log.error("cannot start: Redis at REDIS_URL is not reachable (%s)", exc)
    except OperationalError as exc:
        log.error("cannot start: the database at DATABASE_URL is not reachable (%s)", exc.orig)
    except KeyboardInterrupt:
        return 0
    return 1
