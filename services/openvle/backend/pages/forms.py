"""Form input to the service layer's models, and their errors back to the field that caused them.

The service layer and the specs say what is wrong as "field: what to do" (pydantic's location, or a
message that starts with the field's name); a page shows each message next to its field, and
re-renders the form with what the user typed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import ValidationError

from openvle.errors import RequestError


@dataclass
class FormState:
    """What a form shows: the values typed, an error per field, and one for the form as a whole."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.error)

    def add(self, message: str, fields: tuple[str, ...]) -> None:
        """A message from the service layer: next to its field if it names one, else on the form."""
        name, _, rest = message.partition(": ")
        if rest and name in fields:
            self.errors.setdefault(name, _sentence(rest))
        else:
            self.error = self.error or _sentence(message)

    def add_validation(self, exc: ValidationError, fields: tuple[str, ...], renames: dict[str, str] | None = None):
        for problem in exc.errors():
            where = str(problem["loc"][0]) if problem["loc"] else ""
            where = (renames or {}).get(where, where)
            text = problem["msg"].removeprefix("Value error, ")
            if where in fields:
                self.errors.setdefault(where, _sentence(text))
            else:
                self.add(text, fields)  # a model-level check names its field in the text ("end: ...")

    def add_error(self, exc: RequestError, fields: tuple[str, ...]) -> None:
        self.add(str(exc), fields)


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]) if text else text


LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type=datetime-local> sends and shows


def parse_utc(value: str, name: str, state: FormState) -> dt.datetime | None:
    """A datetime-local value read as UTC (the pages say times are UTC); None and an error if bad."""
    value = value.strip()
    if not value:
        state.errors[name] = "Give a date and time (UTC), e.g. 2026-05-04 09:00."
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        state.errors[name] = f"{value!r} is not a date and time: write it as 2026-05-04 09:00 (UTC)."
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def local(value: dt.datetime | None) -> str:
    """A stored (naive UTC) time as a datetime-local input's value."""
    return value.strftime(LOCAL_FORMAT) if value is not None else ""
