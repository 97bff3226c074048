"""Parameter checks with PVE::JSONSchema's rules and texts (check_prop / check_type / check_format)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import param_error

NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_DNS_PART = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")

# format name -> (regex a value must match, the verifier's die text); list formats are "<name>-list"
FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "pve-vmid": (re.compile(r"^[1-9][0-9]{2,8}$"), "value does not look like a valid VM ID\n"),
    "pve-node": (NODE_RE, "value does not look like a valid node name\n"),
    "dns-name": (re.compile(rf"^({_DNS_PART}\.)*{_DNS_PART}$"), "value does not look like a valid DNS name\n"),
    "pve-storage-id": (re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.I),
                       "storage ID '{v}' contains illegal characters\n"),
    "pve-poolid": (re.compile(r"^[A-Za-z0-9_\-]+$"), "invalid pool ID '{v}'\n"),
    "pve-configid": (re.compile(r"^[a-z][a-z0-9_]+$", re.I), "invalid configuration ID '{v}'\n"),
    "pve-tag": (re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.I), "invalid characters in tag '{v}'\n"),
    "pve-snapshot-name": (re.compile(r"^[a-zA-Z][a-zA-Z0-9_\-]*$"), "invalid format - '{v}' is not a valid name\n"),
    "pve-task-status-type": (re.compile(r"^(ok|error|warning|unknown)$", re.I), "invalid status '{v}'\n"),
}


def split_list(text: str) -> list[str]:
    """PVE::Tools::split_list: separators are NUL, comma, semicolon and whitespace."""
    return [p for p in re.split(r"[\0,;\s]+", text) if p]


@dataclass(frozen=True)
class Prop:
    type: str = "string"  # string | integer | boolean | number
    optional: bool = True
    format: str | None = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None


def req(type_: str = "string", **kw: Any) -> Prop:
    return Prop(type=type_, optional=False, **kw)


@dataclass
class Schema:
    props: dict[str, Prop]
    patterns: list[tuple[re.Pattern[str], Prop]] = field(default_factory=list)  # numbered options: net0, scsi1 ...

    def lookup(self, name: str) -> Prop | None:
        if name in self.props:
            return self.props[name]
        for pattern, prop in self.patterns:
            if pattern.match(name):
                return prop
        return None

    def extend(self, **more: Prop) -> Schema:
        return Schema({**self.props, **more}, list(self.patterns))


def _scalar_text(value: Any) -> tuple[str | None, str | None]:
    """(text as Perl would see it, the ref type for arrays/objects)."""
    if isinstance(value, bool):
        return ("1" if value else "0"), None
    if isinstance(value, list):
        return None, "ARRAY"
    if isinstance(value, dict):
        return None, "HASH"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)), None
    return str(value), None


def check_prop(value: Any, prop: Prop) -> tuple[str | None, Any]:
    """(error text or None, the value coerced to the property's type)."""
    text, ref = _scalar_text(value)
    if ref is not None:
        return f"type check ('{prop.type}') failed - got {ref}", None
    assert text is not None
    if prop.type == "boolean":
        if isinstance(value, bool):
            return None, int(value)
        if text not in ("0", "1"):
            return f"type check ('boolean') failed - got '{text}'", None
        coerced: Any = int(text)
    elif prop.type == "integer":
        if not _INTEGER_RE.match(text):
            return f"type check ('integer') failed - got '{text}'", None
        coerced = int(text)
    elif prop.type == "number":
        if not _NUMBER_RE.match(text):
            return f"type check ('number') failed - got '{text}'", None
        coerced = float(text)
    else:
        coerced = text
    if prop.format:
        err = check_format(prop.format, text)
        if err:
            return f"invalid format - {err}", None
    if prop.max_length is not None and len(text) > prop.max_length:
        return f"value may only be {prop.max_length} characters long", None
    if _NUMBER_RE.match(text):
        if prop.maximum is not None and float(text) > prop.maximum:
            return f"value must have a maximum value of {_num(prop.maximum)}", None
        if prop.minimum is not None and float(text) < prop.minimum:
            return f"value must have a minimum value of {_num(prop.minimum)}", None
    if prop.enum is not None and text not in prop.enum:
        return f"value '{text}' does not have a value in the enumeration '{', '.join(prop.enum)}'", None
    return None, coerced


def check_format(fmt: str, text: str) -> str | None:
    if fmt.endswith("-list"):
        for item in split_list(text):  # empty lists are allowed
            err = check_format(fmt[: -len("-list")], item)
            if err:
                return err
        return None
    pattern, message = FORMATS[fmt]
    return None if pattern.match(text) else message.format(v=text)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate(params: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Check every parameter like PVE's check_object; raise the 400 with all errors, else return coerced values."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    present = {k: v for k, v in params.items() if v is not None}  # JSON null is Perl undef: absent
    for name, prop in schema.props.items():
        if name not in present and not prop.optional:
            errors[name] = "property is missing and it is not optional"
    for name, value in present.items():
        prop = schema.lookup(name)
        if prop is None:
            errors[name] = "property is not defined in schema and the schema does not allow additional properties"
            continue
        err, coerced = check_prop(value, prop)
        if err:
            errors[name] = err
        else:
            out[name] = coerced
    if errors:
        raise param_error(errors)
    return out
