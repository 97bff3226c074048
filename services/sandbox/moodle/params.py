"""External function parameter descriptions and external_api::validate_parameters(): declared keys only,
required keys present, every scalar unchanged by clean_param() (so "5.0" is not an int and "true" not a bool).
The texts, and the `key => ` path that wraps a nested failure, are Moodle's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .phpform import to_string

# VALUE_* constants of external_description
REQUIRED, OPTIONAL, DEFAULT = 1, 2, 0

# PARAM_* names as Moodle prints them in "the server was expecting ... type"
INT, BOOL, RAW, RAW_TRIMMED, TEXT, NOTAGS = "int", "bool", "raw", "raw_trimmed", "text", "notags"
ALPHA, ALPHAEXT, ALPHANUM, ALPHANUMEXT, SAFEDIR = "alpha", "alphaext", "alphanum", "alphanumext", "safedir"
USERNAME, AUTH, LANG, THEME, TIMEZONE, PLUGIN = "username", "auth", "lang", "theme", "timezone", "plugin"
SEQUENCE = "sequence"

AUTH_PLUGINS = ("cas", "db", "email", "ldap", "lti", "manual", "mnet", "nologin", "none", "oauth2", "shibboleth",
                "webservice")  # the auth/ directories of a 4.5 install
LANGS = ("en",)  # language packs installed
THEMES = ("boost", "classic")

_INT_LIKE = re.compile(r"[ \t\n\r\v\f]*([+-]?[0-9]+)(\.[0-9]*)?([eE][+-]?[0-9]+)?")
_TIMEZONE = re.compile(r"^(([+-]?(0?[0-9](\.[5|0])?|1[0-3](\.0)?|1[0-2]\.5))|(99)|[A-Za-z0-9]+(/?[A-Za-z_-])+)$")
_PLUGIN = re.compile(r"^[a-z](?:[a-z0-9_](?!__))*[a-z0-9]+$")
_TAG = re.compile(r"<(?=[^\s<])[^>]*(>|$)", re.S)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Value:
    type: str
    required: int = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Single:
    keys: dict[str, Desc] = field(default_factory=dict)
    required: int = REQUIRED
    default: Any = None


@dataclass(frozen=True)
class Multiple:
    content: Desc
    required: int = REQUIRED
    default: Any = None


Desc = Value | Single | Multiple


def opt(ptype: str) -> Value:
    return Value(ptype, OPTIONAL)


def dflt(ptype: str, default: Any) -> Value:
    return Value(ptype, DEFAULT, default)


# ---- clean_param() --------------------------------------------------------------------------------------------
def php_intval(text: str) -> int:
    """(int)$string in PHP 8: a leading numeric prefix, else 0."""
    m = _INT_LIKE.match(text)
    if not m:
        return 0
    if m.group(2) or m.group(3):
        try:
            number = float(m.group(0).strip())
        except ValueError:
            return 0
        if number != number or abs(number) >= 2**63:
            return INT64_MAX if number > 0 else -INT64_MAX - 1
        return int(number)
    return max(-INT64_MAX - 1, min(INT64_MAX, int(m.group(1))))


def strip_tags(text: str) -> str:
    return _TAG.sub("", text)


def clean(value: Any, ptype: str) -> Any:
    text = to_string(value)
    if ptype == INT:
        return value if isinstance(value, int) and not isinstance(value, bool) else php_intval(text)
    if ptype == BOOL:
        low = text.lower()
        if low in ("on", "yes", "true"):
            return 1
        if low in ("off", "no", "false"):
            return 0
        return 0 if text in ("", "0") else 1
    if ptype == RAW:
        return text
    if ptype == RAW_TRIMMED:
        return text.strip(" \t\n\r\0\x0b")
    if ptype in (TEXT, NOTAGS):
        return strip_tags(text)
    if ptype == ALPHA:
        return re.sub(r"[^a-zA-Z]", "", text)
    if ptype == ALPHAEXT:
        return re.sub(r"[^a-zA-Z_-]", "", text)
    if ptype == ALPHANUM:
        return re.sub(r"[^A-Za-z0-9]", "", text)
    if ptype == ALPHANUMEXT:
        return re.sub(r"[^A-Za-z0-9_-]", "", text)
    if ptype == SAFEDIR:
        return re.sub(r"[^a-zA-Z0-9_-]", "", text)
    if ptype == SEQUENCE:
        return re.sub(r"[^0-9,]", "", text)
    if ptype == USERNAME:
        text = text.strip(" \t\n\r\0\x0b").lower().replace(" ", "")
        return re.sub(r"[^-.@_a-z0-9]", "", text)
    if ptype == PLUGIN:
        return text if _PLUGIN.match(text) and "__" not in text else ""
    if ptype == AUTH:
        text = clean(text, PLUGIN)
        return text if text in AUTH_PLUGINS else ""
    if ptype == LANG:
        text = clean(text, SAFEDIR)
        return text if text in LANGS else ""
    if ptype == THEME:
        text = clean(text, PLUGIN)
        return text if text in THEMES else ""
    if ptype == TIMEZONE:
        return text if _TIMEZONE.match(text) else ""
    raise ValueError(f"unknown PARAM type {ptype}")


# ---- validate_parameters() ------------------------------------------------------------------------------------
def _wrap(key: str, err: errors.WsError) -> errors.WsError:
    return errors.invalid_parameter(f"{key} => {err.message}: {err.debuginfo}")


def validate(desc: Desc, params: Any) -> Any:
    if isinstance(desc, Value):
        if isinstance(params, dict):
            raise errors.invalid_parameter("Scalar type expected, array or object received.")
        if desc.type == BOOL and (isinstance(params, bool) or params in (0, 1, "0", "1")):
            return bool(int(params))
        debuginfo = (f'Invalid external api parameter: the value is "{to_string(params)}", '
                     f'the server was expecting "{desc.type}" type')
        if params is None:
            raise errors.invalid_parameter(debuginfo)
        cleaned = clean(params, desc.type)
        if to_string(params) != to_string(cleaned):
            raise errors.invalid_parameter(debuginfo)
        return cleaned
    if not isinstance(params, (dict, list)):
        raise errors.invalid_parameter(f"Only arrays accepted. The bad value is: '{to_string(params)}'")
    if isinstance(desc, Multiple):
        values = params.values() if isinstance(params, dict) else params
        return [validate(desc.content, item) for item in values]
    if isinstance(params, list):
        params = {str(i): v for i, v in enumerate(params)}
    rest = dict(params)
    result: dict[str, Any] = {}
    for key, sub in desc.keys.items():
        if key not in rest:
            if sub.required == REQUIRED:
                raise errors.invalid_parameter(f"Missing required key in single structure: {key}")
            if sub.required == DEFAULT:
                try:
                    result[key] = validate(sub, sub.default)
                except errors.WsError as err:
                    raise _wrap(key, err) from None
        else:
            try:
                result[key] = validate(sub, rest[key])
            except errors.WsError as err:
                raise _wrap(key, err) from None
        rest.pop(key, None)
    if rest:
        raise errors.invalid_parameter(f"Unexpected keys ({', '.join(rest)}) detected in parameter array.")
    return result
