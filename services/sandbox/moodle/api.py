"""/webservice/rest/server.php: the order Moodle's webservice_base_server::run() checks things in.

token (invalidtoken) -> function name given -> function exists (invalidrecord) -> function in the token's
service (accessexception) -> parameters (invalidparameter) -> the function itself. Faults are drawn first:
a 503 or a lost request come from in front of Moodle; a database error only once the function runs.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from . import errors, params, wire
from .ctx import Ctx
from .functions import KNOWN, SERVICE
from .model import ADMIN_ID, now
from .phpform import PhpArray, var_export
from .state import MoodleState

log = logging.getLogger(__name__)

PATH = "/webservice/rest/server.php"
SETTINGS = ("moodlewssettingraw", "moodlewssettingfileurl", "moodlewssettingfilter", "moodlewssettinglang",
            "moodlewssettingtimezone")  # set_web_service_call_settings() takes these out of the parameters
_INDENT = " " * 21  # the continuation lines of the message are indented like that in webservice/lib.php
ACCESS_TEXT = "\n".join([
    "Access to the function {name}() is not allowed.",
    _INDENT + "There could be multiple reasons for this:",
    _INDENT + "1. The service linked to the user token does not contain the function.",
    _INDENT + "2. The service is user-restricted and the user is not listed.",
    _INDENT + "3. The service is IP-restricted and the user IP is not listed.",
    _INDENT + "4. The service is time-restricted and the time has expired.",
    _INDENT + "5. The token is time-restricted and the time has expired.",
    _INDENT + "6. The service requires a specific capability which the user does not have.",
    _INDENT + "7. The function is called with username/password (no user token is sent)",
    _INDENT + "and none of the services has the function to allow the user.",
    _INDENT + "These settings can be found in Administration > Site administration",
    _INDENT + "> Server > Web services > External services and Manage tokens.",
])


def db_fault(write: bool) -> errors.WsError:
    """What a database hiccup looks like from the client: the function's transaction is rolled back."""
    if write:
        debuginfo = ("Deadlock found when trying to get lock; try restarting transaction\n"
                     f"UPDATE {{course}} SET cacherev = ? WHERE id = ?\n[{var_export([now(), 2])}]")
        return errors.moodle("dmlwriteexception", debuginfo=debuginfo, exception=errors.WRITE_EXCEPTION)
    debuginfo = (f"MySQL server has gone away\nSELECT * FROM {{user}} WHERE id = ? AND deleted = ?\n"
                 f"[{var_export([ADMIN_ID, 0])}]")
    return errors.moodle("dmlreadexception", debuginfo=debuginfo, exception=errors.READ_EXCEPTION)


class Api:
    def __init__(self, state: MoodleState, token: str, wwwroot: Callable[[], str], pause: Callable[[float], bool]):
        self.state = state
        self.token = token
        self.wwwroot = wwwroot
        self.pause = pause

    def handle(self, get: PhpArray, post: PhpArray) -> wire.Reply:
        if not self.state.config.rest_enabled:
            return wire.Reply(403)
        decision = self.state.decide_faults()
        if decision.drop == "before":
            return wire.Reply(0, drop=True)
        if decision.latency:
            self.pause(decision.latency)
        if decision.error == "http503":
            return wire.Reply(503, wire.UNAVAILABLE_HTML, {"Content-Type": "text/html"})
        for name in SETTINGS:
            get.pop(name, None)
            post.pop(name, None)
        request: dict[str, Any] = {**get, **post}  # array_merge($_GET, $_POST)
        fmt = request.pop("moodlewsrestformat", "xml")
        fmt = fmt if fmt in ("xml", "json") else "xml"
        try:
            result, has_return = self._call(request, decision.error == "dml")
            reply = wire.ok(result, fmt, has_return)
        except errors.WsError as err:
            reply = wire.error(err, fmt, self.state.config.debug)
        except Exception as exc:  # a simulator bug should still answer like Moodle's exception handler
            log.exception("web service function failed")
            err = errors.moodle("generalexceptionmessage", a=str(exc), exception=type(exc).__name__)
            err.message = f"Exception - {exc}"
            reply = wire.error(err, fmt, self.state.config.debug)
        if decision.drop == "after":
            return wire.Reply(0, drop=True)
        return reply

    def _call(self, request: dict[str, Any], db_error: bool) -> tuple[Any, bool]:
        token = request.pop("wstoken", None)
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise errors.moodle("invalidtoken", "webservice")
        name = request.pop("wsfunction", None)
        if not name:
            raise errors.invalid_parameter("Missing function name")
        name = name if isinstance(name, str) else "Array"
        if name not in KNOWN:
            raise errors.missing_record("external_functions", "SELECT * FROM {external_functions} WHERE name = ?",
                                        [name])
        function = SERVICE.get(name)
        if function is None:
            raise errors.access(ACCESS_TEXT.format(name=name))
        values = params.validate(function.params, request)
        if db_error:
            raise db_fault(function.write)
        ctx = Ctx(self.state, self.wwwroot(), ADMIN_ID, tuple(SERVICE), self.pause)
        if function.locked:
            with self.state.lock:
                result = function.handler(ctx, values)
        else:
            result = function.handler(ctx, values)
        return result, function.returns
