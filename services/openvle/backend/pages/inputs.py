"""Inputs of the admin pages (filters in the query string, forms): what was typed goes back into the
form unchanged, and each problem is said next to the field that caused it (pydantic's errors, or the
service layer's "field: what is wrong" sentences)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from openvle.errors import RequestError

M = TypeVar("M", bound=BaseModel)

_PYDANTIC_PREFIXES = ("Value error, ", "Input should be ")


def typed(source: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The fields as typed (stripped), for the form to show again."""
    return {name: (source.get(name) or "").strip() for name in names}


def field_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        message = err["msg"]
        if message.startswith("Input should be "):
            message = "should be " + message.removeprefix("Input should be ")
        out.setdefault(name, message.removeprefix("Value error, ")[:1].upper()
                       + message.removeprefix("Value error, ")[1:] + ".")
    return out


def parse(model: type[M], values: Mapping[str, str], **fixed) -> tuple[M | None, dict[str, str]]:
    """`model` from the non-empty typed values (an empty field means "not given"), or the errors by field."""
    given = {name: value for name, value in values.items() if value != ""}
    try:
        return model.model_validate({**given, **fixed}), {}
    except ValidationError as exc:
        return None, field_errors(exc)


def error_by_field(exc: RequestError, fields: Iterable[str], fallback: str,
                   said_as: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """The service layer's refusals start with the field they are about ("password: too short",
    "user name 'x': use …"); `said_as` adds words that name a field inside a sentence ("is not an
    email address"). One that names no field is shown at `fallback`."""
    message = str(exc)
    sentence = message[:1].upper() + message[1:]
    for name in fields:
        if message.startswith(f"{name}:"):
            rest = message[len(name) + 1:].strip()
            return {name: rest[:1].upper() + rest[1:]}
        words = name.replace("_", " ")
        if message.startswith(f"{words} ") or any(phrase in message for phrase in (said_as or {}).get(name, ())):
            return {name: sentence}
    return {fallback: sentence}
