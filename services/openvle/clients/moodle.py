"""Moodle web services over REST (MOODLE_URL, MOODLE_TOKEN, MOODLE_VERIFY_SSL).

Parameters are form-encoded the PHP way (users[0][email]=...). Moodle reports errors inside HTTP 200
answers as {"exception", "errorcode", "message"}: `errorcode` decides. Errors of configuration or
input (invalidtoken, accessexception, invalidparameter, ...) are permanent; database hiccups, 5xx
and the network are transient: retried and masked as every outside call's are (clients/outside.py).
"""

from __future__ import annotations

from typing import Any

import httpx

from openvle.clients.outside import OutsideError, PermanentOutsideError, TransientError, http_failure, retried
from openvle.clients.tls import client_context
from openvle.errors import PermanentError
from openvle.settings import Settings, get_settings

PATH = "/webservice/rest/server.php"


class MoodleError(OutsideError):
    system = "Moodle"

    def __init__(self, message: str, errorcode: str | None = None):
        super().__init__(message)
        self.errorcode = errorcode


class MoodleTransientError(MoodleError, TransientError):
    pass


class MoodlePermanentError(MoodleError, PermanentOutsideError):
    pass


class ShortnameTaken(MoodleError):
    """A course with that short name exists: look it up instead."""


_TRANSIENT_CODES = ("dmlwriteexception", "dmlreadexception", "dbsessionfailure", "sessionwaiterr")


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """PHP bracket form: {"users": [{"email": "a"}]} → [("users[0][email]", "a")]."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        if isinstance(value, bool):
            value = int(value)
        return [(prefix, str(value))]
    pairs: list[tuple[str, str]] = []
    for key, item in items:
        pairs += flatten(item, f"{prefix}[{key}]" if prefix else str(key))
    return pairs


class Moodle:
    def __init__(self, settings: Settings | None = None):
        settings = settings or get_settings()
        if not (settings.MOODLE_URL and settings.MOODLE_TOKEN):
            raise PermanentError("Moodle is not configured: set MOODLE_URL and MOODLE_TOKEN")
        self.base = settings.MOODLE_URL
        self._token = settings.MOODLE_TOKEN.get_secret_value()
        self._http = httpx.Client(base_url=self.base, timeout=settings.MOODLE_TIMEOUT,
                                  verify=client_context(settings.verify("MOODLE_VERIFY_SSL")))

    @retried(lambda self, function, **params: function)
    def call(self, function: str, **params: Any) -> Any:
        form = [("wstoken", self._token), ("wsfunction", function), ("moodlewsrestformat", "json")]
        form += flatten(params)
        try:
            response = self._http.post(PATH, data=dict(form))  # PHP bracket keys are unique
        except httpx.TransportError as exc:
            raise http_failure(exc, self.base, "MOODLE", MoodleTransientError, MoodlePermanentError,
                               during=function) from None
        if response.status_code == 403:
            raise MoodlePermanentError("Moodle refused web service calls (403): enable the REST protocol")
        if response.status_code >= 400:
            raise MoodleTransientError(f"Moodle answered HTTP {response.status_code} to {function}")
        try:
            body = response.json()
        except ValueError:
            raise MoodleTransientError(f"Moodle answered {function} without JSON") from None
        if isinstance(body, dict) and "errorcode" in body and "exception" in body:
            raise _error(function, body)
        return body

    def course_by_shortname(self, shortname: str) -> dict | None:
        courses = self.call("core_course_get_courses_by_field", field="shortname", value=shortname)["courses"]
        return courses[0] if courses else None

    def course_url(self, course_id: int) -> str:
        return f"{self.base}/course/view.php?id={course_id}"


def _error(function: str, body: dict) -> MoodleError:
    code = str(body.get("errorcode"))
    message = f"Moodle {function}: {body.get('message', code)}"
    if body.get("debuginfo"):
        message += f" ({str(body['debuginfo']).strip()})"
    if code == "shortnametaken":
        return ShortnameTaken(message, code)
    if code in _TRANSIENT_CODES or code.startswith("dml"):
        return MoodleTransientError(message, code)
    if code == "invalidtoken":
        return MoodlePermanentError(f"{message}: check MOODLE_TOKEN", code)
    if code == "accessexception":
        return MoodlePermanentError(f"{message}: add {function} to the token's web service", code)
    return MoodlePermanentError(message, code)


def get_moodle() -> Moodle:
    return Moodle()
