"""`openvle user …` and `openvle token …`: accounts from the server's shell, the first admin included.

Whoever runs these on the server can read the database anyway, so they act as an admin; every change
is in the audit log (via cli, with their login name). A password is typed twice at a prompt, or
generated and printed once; a token is printed once and never again.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from openvle.cli_base import EXIT_OK, CliError, check_database, guarded, note, render_table

ROLES = ("student", "teacher", "admin")


def add_commands(commands: argparse._SubParsersAction) -> None:
    user = commands.add_parser("user", help="accounts: create (the first admin too), list, change, passwords")
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an account; admins get a password (typed or generated), "
                                               "the others an email to choose one")
    create.add_argument("name", metavar="NAME", help="user name: lower-case letters, digits and . _ @ -")
    create.add_argument("--admin", action="store_true", help="an admin account (the same as --role admin)")
    create.add_argument("--role", choices=ROLES, help="student (default), teacher or admin")
    create.add_argument("--email", help="their email address (admins: optional)")
    create.add_argument("--first-name", default="")
    create.add_argument("--last-name", default="")
    create.add_argument("--password", action="store_true",
                        help="set a password now (typed at the prompt, or generated) instead of emailing a link")
    actions.add_parser("list", help="every account: id, name, email, role, active, last login")
    change = actions.add_parser("set", help="change an account's role, or switch it on or off")
    change.add_argument("name", metavar="NAME")
    change.add_argument("--role", choices=ROLES)
    change.add_argument("--active", choices=("true", "false"), help="false: cannot log in; tokens stop working")
    password = actions.add_parser("password", help="set a new password (typed at the prompt, or generated)")
    password.add_argument("name", metavar="NAME")
    invite = actions.add_parser("invite", help="email the user a link to choose a password")
    invite.add_argument("name", metavar="NAME")

    token = commands.add_parser("token", help="personal API tokens: create (shown once), list, revoke")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="a new token for a user; printed once")
    create.add_argument("--user", required=True, metavar="NAME")
    create.add_argument("--name", required=True, metavar="TOKEN_NAME", help="what uses it, e.g. grading-script")
    create.add_argument("--days", type=int, metavar="DAYS", help="lifetime (default 90, at most API_TOKEN_MAX_DAYS)")
    listing = actions.add_parser("list", help="a user's tokens")
    listing.add_argument("--user", required=True, metavar="NAME")
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int, metavar="ID")
    revoke.add_argument("--user", required=True, metavar="NAME")


def run(args: argparse.Namespace) -> int:
    from openvle.cli_base import quiet_logs
    from openvle.settings import get_settings

    quiet_logs(get_settings())
    handler = {
        ("user", "create"): user_create, ("user", "list"): user_list, ("user", "set"): user_set,
        ("user", "password"): user_password, ("user", "invite"): user_invite,
        ("token", "create"): token_create, ("token", "list"): token_list, ("token", "revoke"): token_revoke,
    }[(args.command, args.action)]
    return guarded(lambda: _refusals(handler, args))


def _refusals(handler, args) -> int:
    from openvle.accounts.passwords import PasswordRejected
    from openvle.errors import RequestError

    check_database()
    try:
        return handler(args)
    except (RequestError, PasswordRejected) as exc:
        raise CliError(str(exc)) from None


def _actor():
    from openvle.accounts.identity import cli_actor

    try:
        login = getpass.getuser()
    except Exception:
        login = "unknown"
    return cli_actor(login)


def _audit(action: str, object_type: str, object_id, detail: str | None = None) -> None:
    from openvle import auditlog

    auditlog.record(actor=_actor(), address="cli", method="CLI", path=f"openvle {action.replace('.', ' ')}",
                    action=f"cli.{action}", outcome=200, object_type=object_type, object_id=object_id, detail=detail)


def _user(name: str):
    from openvle.accounts.users import find

    user = find(name)
    if user is None:
        raise CliError(f"no account {name!r}: see `openvle user list`")
    return user


def _new_password(name: str) -> tuple[str, bool]:
    """(password, generated): typed twice on a terminal (empty: generated), else generated."""
    from openvle.accounts.passwords import check_new
    from openvle.accounts.users import generated_password

    if not sys.stdin.isatty():
        return generated_password(), True
    for _ in range(3):
        first = getpass.getpass("password (empty: generate one): ")
        if not first:
            return generated_password(), True
        try:
            check_new(first, name)
        except ValueError as exc:
            note(str(exc))
            continue
        if getpass.getpass("the same again: ") == first:
            return first, False
        note("the two differ: try again")
    raise CliError("no password set: run the command again")


def user_create(args: argparse.Namespace) -> int:
    from openvle.accounts import links, users

    role = "admin" if args.admin else (args.role or "student")
    if args.admin and args.role not in (None, "admin"):
        raise CliError("--admin and --role disagree: give one of them")
    email = args.email or (f"{args.name.strip().lower()}@openvle.invalid" if role == "admin" else None)
    if email is None:
        raise CliError("--email is needed: the user gets their link (and their lab emails) there")
    users.check_username(args.name)
    password, generated = (_new_password(args.name.strip().lower()) if role == "admin" or args.password
                           else (None, False))
    user_id = users.create_user(args.name, email, role, args.first_name, args.last_name, password=password)
    _audit("user.create", "user", user_id, f"{args.name} ({role})")
    print(user_id, flush=True)
    if generated:
        note(f"created {role} {args.name!r} (user {user_id}) with the password below; it is shown only now")
        print(password, flush=True)
    elif password:
        note(f"created {role} {args.name!r} (user {user_id}) with the password you typed")
    else:
        links.send_link(user_id, links.INVITE, requested_by=_actor().requested_by)
        note(f"created {role} {args.name!r} (user {user_id}); an email to {email} lets them choose a password")
    return EXIT_OK


def user_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import User

    with session_scope() as session:
        rows = session.execute(select(User).order_by(User.id)).scalars().all()
        table = [[str(u.id), u.username, u.email, u.role, "yes" if u.active else "no",
                  "yes" if u.password_hash else "no",
                  f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "-"] for u in rows]
    if not table:
        print("no accounts yet: the first admin is `openvle user create --admin NAME`")
        return EXIT_OK
    for line in render_table(["ID", "NAME", "EMAIL", "ROLE", "ACTIVE", "PASSWORD", "LAST LOGIN (UTC)"], table,
                             right=(0,)):
        print(line)
    return EXIT_OK


def user_set(args: argparse.Namespace) -> int:
    from openvle.accounts import users

    if args.role is None and args.active is None:
        raise CliError("nothing to change: give --role and/or --active")
    user = _user(args.name)
    active = None if args.active is None else args.active == "true"
    users.update_user(user.id, role=args.role, active=active)
    _audit("user.set", "user", user.id, ", ".join(f"{k}={v}" for k, v in (("role", args.role), ("active", active))
                                                  if v is not None))
    note(f"{user.username}: " + ", ".join(f"{k} {v}" for k, v in (("role", args.role), ("active", args.active))
                                           if v is not None))
    return EXIT_OK


def user_password(args: argparse.Namespace) -> int:
    from openvle.accounts import users

    user = _user(args.name)
    password, generated = _new_password(user.username)
    users.set_password(user.id, password)
    _audit("user.password", "user", user.id)
    if generated:
        note(f"new password of {user.username} (shown only now; their sessions have ended):")
        print(password, flush=True)
    else:
        note(f"password of {user.username} set; their sessions have ended")
    return EXIT_OK


def user_invite(args: argparse.Namespace) -> int:
    from openvle.accounts import links

    user = _user(args.name)
    purpose = links.RESET if user.password_hash else links.INVITE
    if links.send_link(user.id, purpose, requested_by=_actor().requested_by) is None:
        raise CliError(f"{user.username}: a link went out moments ago (or the account is switched off)")
    _audit("user.invite", "user", user.id)
    note(f"an email with a link to choose a password is on its way to {user.email}")
    return EXIT_OK


def token_create(args: argparse.Namespace) -> int:
    from openvle.accounts import tokens

    user = _user(args.user)
    row, token = tokens.create_token(user.id, args.name, args.days)
    _audit("token.create", "token", row.id, f"{row.name!r} for {user.username}")
    note(f"token {row.id} {row.name!r} for {user.username}, valid until {row.expires_at:%Y-%m-%d %H:%M} UTC; "
         "shown only now:")
    print(token, flush=True)
    return EXIT_OK


def token_list(args: argparse.Namespace) -> int:
    from openvle.accounts import tokens
    from openvle.db.models import utcnow

    user = _user(args.user)
    now = utcnow()
    rows = [[str(t.id), t.name, t.prefix + "…", f"{t.expires_at:%Y-%m-%d}",
             "revoked" if t.revoked_at else ("expired" if t.expires_at <= now else "live"),
             f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-"] for t in tokens.list_tokens(user.id)]
    if not rows:
        print(f"{user.username} has no tokens: `openvle token create --user {user.username} --name NAME`")
        return EXIT_OK
    for line in render_table(["ID", "NAME", "STARTS", "EXPIRES", "STATE", "LAST USED (UTC)"], rows, right=(0,)):
        print(line)
    return EXIT_OK


def token_revoke(args: argparse.Namespace) -> int:
    from openvle.accounts import tokens

    user = _user(args.user)
    row = tokens.revoke_token(user.id, args.id)
    _audit("token.revoke", "token", row.id, f"{row.name!r} of {user.username}")
    note(f"token {row.id} {row.name!r} of {user.username} is revoked")
    return EXIT_OK
