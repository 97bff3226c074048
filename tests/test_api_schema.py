"""Schemathesis against /openapi.json: generated requests (valid and not) to every operation, as an
admin, with a bounded number of examples each. No answer may be a server error or break the schema
the API itself publishes (error answers included: they are documented as {error, problems})."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy import delete

from conftest import _flush, _use
from helpers import account, bearer
from openvle.db.engine import session_scope
from openvle.db.models import Base, utcnow
from openvle.lab_events import create_event, create_template

EXAMPLES = 12  # per operation: enough to reach each branch of validation, bounded for the suite's time


@pytest.fixture(scope="module")
def admin_id(stores):
    """The admin the generated requests act as (by id: an earlier group may have revoked its tokens)."""
    _use(stores, DEV_MODE="true")
    _flush(stores)
    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    user_id, _ = account("schema-admin", "admin")
    template = create_template("tpl", pve_vmid=9001, node="pve1")
    start = utcnow() + dt.timedelta(days=10)
    create_event("Lab", template, start, start + dt.timedelta(hours=1),
                 participants_=[{"username": "p1", "email": "p1@uni.example"}])
    yield user_id
    _flush(stores)
    _use(stores)


@pytest.fixture(scope="module")
def api_schema(admin_id):
    from openvle.backend.app import create_app

    return schemathesis.openapi.from_asgi("/openapi.json", create_app())


def _fresh_admin_token(user_id: int) -> str:
    """Generated requests may revoke the caller's token or switch its account off: each operation
    starts as a working admin again."""
    from sqlalchemy import update

    from openvle.accounts.tokens import create_token
    from openvle.db.models import User

    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id).values(active=True, role="admin"))
    return create_token(user_id, "schemathesis")[1]


def _generated_requests(operation, token: str, answered: dict):
    """One bounded Hypothesis run over an operation; each operation gets its own, so one failure
    does not hide the others."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case):
        response = case.call_and_validate(headers=bearer(token),
                                          checks=[not_a_server_error, response_schema_conformance])
        answered.setdefault(operation.label, set()).add(response.status_code)

    return run


# The operations in four groups of about a dozen, so pytest-xdist runs them side by side; the last
# group takes whatever the others do not name, so a new endpoint is never left out.
GROUPS = {
    "events": ("/api/events",),
    "accounts": ("/api/users", "/api/auth"),
    "own-and-vms": ("/api/me", "/api/templates", "/api/vms"),
    "operations": (),
}


def _in_group(path: str, group: str) -> bool:
    named = [prefix for prefixes in GROUPS.values() for prefix in prefixes]
    if GROUPS[group]:
        return path.startswith(GROUPS[group])
    return not path.startswith(tuple(named))


@pytest.mark.parametrize("group", list(GROUPS))
def test_no_server_error_and_every_answer_fits_the_schema(api_schema, admin_id, group):
    failures, answered = [], {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40
    mine = [operation for operation in operations if _in_group(operation.path, group)]
    assert len(mine) >= 8, [operation.label for operation in mine]
    for operation in mine:
        run = _generated_requests(operation, _fresh_admin_token(admin_id), answered)
        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    # Not vacuous: the requests got past authentication and reached the handlers; every list (a GET
    # without ids in its path) answered 2xx at least once.
    lists = [label for label in answered if label.startswith("GET ") and "{" not in label]
    assert lists and all(any(200 <= c < 300 for c in answered[label]) for label in lists), answered
    locked_out = [label for label, codes in answered.items() if codes == {401} and "/api/auth/" not in label]
    assert not locked_out, answered  # (logging in with made-up passwords is 401, as it should be)
