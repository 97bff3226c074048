"""The YAML files of `openvle template create` and `openvle event create`: read, checked with the
API's own models (specs.py), and every problem said as "field: what is wrong, how to fix it"."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from openvle.cli_base import CliError, first_line

EXAMPLE_TIME = "2026-05-04T09:00:00Z"  # as in specs.py, without importing pydantic here


def load_yaml(path: str) -> tuple[str, Any]:
    """(the name to show in messages, the parsed document). ISO times stay strings: pydantic parses them."""
    import yaml

    shown = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{shown}: no such file: check the path given to -f") from None
    except IsADirectoryError:
        raise CliError(f"{shown}: is a directory, not a YAML file: give the file's path to -f") from None
    except UnicodeDecodeError:
        raise CliError(f"{shown}: not UTF-8 text: save it as UTF-8 YAML") from None
    except OSError as exc:
        raise CliError(f"{shown}: cannot read it ({exc.strerror}): check the path and its permissions") from None
    try:
        return shown, yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        raise CliError(f"{shown}: invalid YAML{_yaml_where(exc)}: {_yaml_problem(exc)}") from None


def _yaml_where(exc) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(exc) -> str:
    problem = getattr(exc, "problem", None) or first_line(exc)
    context = getattr(exc, "context", None)
    hint = " (fix the indentation or quote the value)" if "mapping values" in problem else ""
    return f"{problem}{' ' + context if context else ''}{hint}"


@functools.cache
def _loader():
    """A SafeLoader that leaves YAML's implicit timestamps as strings, so a time without a timezone
    or an impossible date reaches the model's check (and its message) instead of YAML's."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


HINTS = {
    "name": "a name, e.g. ubuntu-24.04 or Networks Lab",
    "pve_vmid": "the Proxmox id of the template VM, e.g. 9001",
    "node": "the Proxmox node the template lives on, e.g. pve1",
    "clone_mode": "linked or full",
    "protocol": "rdp, vnc or ssh",
    "port": "a TCP port, 1 to 65535; leave it out for the protocol's default",
    "moodle_course_id": "the id of the Moodle course to copy for each event",
    "template": "a template name or id (create one with `openvle template create -f FILE`)",
    "start": f"an ISO 8601 time with a timezone, e.g. {EXAMPLE_TIME}",
    "end": "an ISO 8601 time with a timezone, e.g. 2026-05-04T17:00:00Z",
    "participants": "a list of {username, email, first_name, last_name}",
    "teachers": "a list of {username, email, first_name, last_name}",
    "username": "lower-case letters, digits and . _ @ -",
    "email": "an email address",
    "status": "draft or scheduled",
}


def models():
    """The YAML schemas: the same ones the API checks its JSON with (specs.py)."""
    from openvle.specs import EventSpec, TemplateSpec

    return TemplateSpec, EventSpec


def validate(model, data: Any, shown: str):
    from pydantic import ValidationError

    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        fields = ", ".join(model.model_fields)
        raise CliError(f"{shown}: expected a mapping of fields ({fields}), got {got}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error, model) for error in exc.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CliError(f"{shown}: {'; '.join(problems[:3])}{more}") from None


def _problem(error: dict, model) -> str:
    """One pydantic error as "field: problem, and how to fix it"."""
    loc = list(error["loc"])
    field = _where(loc)
    leaf = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    hint = HINTS.get(leaf)
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return f"{field}: missing: add `{leaf}: …` ({hint or 'required'})"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc, model)
        return f"{field}: unknown field: remove it or use one of {', '.join(allowed)}"
    if kind == "timezone_aware":
        return f"{field}: {error['input']!r} has no timezone: write it like {EXAMPLE_TIME} (UTC) or " \
               "2026-05-04T11:00:00+02:00"
    if kind.startswith(("datetime", "date_")):
        detail = message.split(",", 1)[1].strip() if "," in message else "not a date and time"
        return f"{field}: {error['input']!r} is not a valid time ({detail}): write ISO 8601 with a timezone, " \
               f"e.g. {EXAMPLE_TIME}"
    if kind == "value_error":
        text = message.removeprefix("Value error, ")
        if not loc:  # a model-level check names its field itself
            return text
        return f"{field}: {text}"
    if kind == "literal_error":
        return f"{field}: {error['input']!r} is not allowed: use {message.removeprefix('Input should be ')}"
    if kind == "list_type":
        return f"{field}: expected a list ({hint or 'a YAML list'})"
    if kind in ("model_type", "dict_type"):
        return f"{field}: expected a mapping ({hint or 'fields'})"
    if kind.startswith("int_"):
        return f"{field}: {error['input']!r} is not a whole number ({hint or 'an integer'})"
    text = message[0].lower() + message[1:] if message else kind
    return f"{field}: {text}{f' ({hint})' if hint else ''}"


def _where(loc: list) -> str:
    """participants[2].email: positions count from 1, as people count list items."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        elif part in ("int", "str"):  # the branch of `int | str` pydantic tried
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "file"


def _allowed_fields(loc: list, model) -> list[str]:
    person_fields = ("username", "email", "first_name", "last_name")
    return list(person_fields) if any(isinstance(p, int) for p in loc) else list(model.model_fields)
