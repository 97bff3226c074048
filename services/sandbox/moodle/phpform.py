"""PHP's side of a request: how `users[0][username]=x` becomes nested arrays in $_GET/$_POST
(php_register_variable_ex), and var_export() for the SQL parameters Moodle quotes in debuginfo.

Arrays are dicts with string keys; PHP turns canonical integer keys ("0", "12", "-3") into ints, which
prints the same, so only the next free index for `[]` needs to know about them."""

from __future__ import annotations

import re
from typing import Any

_INT_KEY = re.compile(r"^(0|-?[1-9][0-9]{0,18})$")

PhpArray = dict[str, Any]


def _next_index(arr: PhpArray) -> str:
    ints = [int(k) for k in arr if _INT_KEY.match(k)]
    return str(max(ints) + 1 if ints and max(ints) >= 0 else 0)


def _split_name(name: str) -> tuple[str, list[str]] | None:
    """Variable base name and bracket indexes, with PHP's quirks: leading spaces dropped, ' ' and '.' in the
    base become '_', a '[' that never closes becomes '_', text after the last ']' is ignored."""
    name = name.lstrip(" ")
    start = name.find("[")
    if start < 0 or "]" not in name[start:]:
        base = name.replace(" ", "_").replace(".", "_")
        if start >= 0:
            base = base[:start] + "_" + base[start + 1:]
        return (base, []) if base else None
    base = name[:start].replace(" ", "_").replace(".", "_")
    if not base:
        return None
    indexes: list[str] = []
    pos = start
    while pos < len(name) and name[pos] == "[":
        end = name.find("]", pos + 1)
        if end < 0:
            break
        indexes.append(name[pos + 1:end])
        pos = end + 1
    return base, indexes


def register(target: PhpArray, name: str, value: str) -> None:
    split = _split_name(name)
    if split is None:
        return
    base, indexes = split
    keys = [base, *indexes]
    cur = target
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if key == "" and depth > 0:
            key = _next_index(cur)
        if last:
            cur[key] = value
        else:
            if not isinstance(cur.get(key), dict):
                cur[key] = {}  # a scalar already there is replaced by the array, as PHP does
            cur = cur[key]


def parse(pairs: list[tuple[str, str]], max_input_vars: int = 5000) -> PhpArray:
    """One superglobal ($_GET or $_POST) from decoded name/value pairs; PHP drops the vars past max_input_vars."""
    out: PhpArray = {}
    for name, value in pairs[:max_input_vars]:
        register(out, name, value)
    return out


def to_string(value: Any) -> str:
    """PHP's (string) cast of a scalar."""
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    return str(value)


def var_export(value: Any, indent: str = "") -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = indent + "  "
        lines = [f"{inner}{var_export(k)} => {var_export(v, inner)}," for k, v in items]
        return "array (\n" + "".join(line + "\n" for line in lines) + indent + ")"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
