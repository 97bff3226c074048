"""Errors as Moodle's web service layer reports them: exception class, errorcode, message (from the English
language strings), debuginfo. Every one answers HTTP 200; wire.py renders them."""

from __future__ import annotations

from typing import Any

from .phpform import var_export

# 4.5 moved the core exceptions to core\exception (the old names are class aliases), and get_class() reports
# the real name. webservice_access_exception and the dml_* exceptions kept their global names in 4.5.
MOODLE_EXCEPTION = "core\\exception\\moodle_exception"
INVALID_PARAMETER = "core\\exception\\invalid_parameter_exception"
CODING_EXCEPTION = "core\\exception\\coding_exception"
ACCESS_EXCEPTION = "webservice_access_exception"
MISSING_RECORD = "dml_missing_record_exception"
WRITE_EXCEPTION = "dml_write_exception"
READ_EXCEPTION = "dml_read_exception"

# (component, identifier) -> English string, as in lang/en/<component>.php
STRINGS: dict[tuple[str, str], str] = {
    ("error", "invalidcourseid"): "You are trying to use an invalid course ID",
    ("error", "invalidrecord"): "Can not find data record in database table {$a}.",
    ("error", "invalidrecordunknown"): "Can not find data record in database.",
    ("error", "invaliduser"): "Invalid user",
    ("error", "invaliduserfield"): "Invalid user field: {$a}",
    ("error", "shortnametaken"): "Short name is already used for another course ({$a})",
    ("error", "courseidnumbertaken"): "ID number is already used for another course ({$a})",
    ("error", "enddatebeforestartdate"): "The course end date must be after the start date.",
    ("error", "useradminodelete"): "Administrator accounts can not be deleted",
    ("error", "dmlwriteexception"): "Error writing to database",
    ("error", "dmlreadexception"): "Error reading from database",
    ("debug", "invalidparameter"): "Invalid parameter value detected",
    ("debug", "codingerror"): "Coding error detected, it must be fixed by a programmer: {$a}",
    ("webservice", "invalidtoken"): "Invalid token - token not found",
    ("webservice", "accessexception"): "Access control exception",
    ("webservice", "invalidextparam"): "Invalid external api parameter: {$a}",
    ("webservice", "errorinvalidparam"): 'The param "{$a}" is invalid.',
    ("enrol_manual", "wsnoinstance"):
        "Manual enrolment plugin instance doesn't exist or is disabled for the course (id = {$a->courseid})",
    ("enrol_manual", "wsusercannotassign"):
        "You don't have the permission to assign this role ({$a->roleid}) to this user ({$a->userid}) "
        "in this course ({$a->courseid}).",
}


class WsError(Exception):
    def __init__(self, exception: str, errorcode: str, message: str, debuginfo: str | None = None):
        super().__init__(message)
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo


def get_string(identifier: str, component: str, a: Any = None) -> str | None:
    text = STRINGS.get((component, identifier))
    if text is None:
        return None
    if a is None:
        return text  # get_string() leaves the placeholders alone when $a is null
    if isinstance(a, dict):
        for key, value in a.items():
            text = text.replace("{$a->" + key + "}", str(value))
        return text
    return text.replace("{$a}", str(a))


def moodle(errorcode: str, module: str = "", a: Any = None, debuginfo: str | None = None,
           exception: str = MOODLE_EXCEPTION) -> WsError:
    """moodle_exception($errorcode, $module, $link, $a, $debuginfo)."""
    if module in ("", "moodle", "core"):
        module = "error"
    message = get_string(errorcode, module, a)
    if message is None:
        message = f"{module}/{errorcode}"  # an identifier without a string (the password policy's HTML, say)
    return WsError(exception, errorcode, message, debuginfo)


def invalid_parameter(debuginfo: str) -> WsError:
    return moodle("invalidparameter", "debug", debuginfo=debuginfo, exception=INVALID_PARAMETER)


def coding(hint: str, debuginfo: str | None = None) -> WsError:
    return moodle("codingerror", "debug", a=hint, debuginfo=debuginfo, exception=CODING_EXCEPTION)


def access(debuginfo: str) -> WsError:
    return moodle("accessexception", "webservice", debuginfo=debuginfo, exception=ACCESS_EXCEPTION)


def missing_record(table: str, sql: str, params: list[Any]) -> WsError:
    """dml_missing_record_exception: the errorcode depends on the table (and on whether SQL is known)."""
    if table == "course":
        code = "invalidrecord" if sql else "invalidcourseid"
    elif table == "user":
        code = "invaliduser"
    else:
        code = "invalidrecord"
    return moodle(code, "error", a=table, debuginfo=f"{sql}\n[{var_export(params)}]", exception=MISSING_RECORD)
