"""The registry of operations: a name ("demo.sleep") → the job function and its queue.

A Task stores the operation name and JSON params; the worker looks the function up here. Job modules
register themselves with `@operation(...)` when `openvle.jobs` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openvle.errors import UnknownOperation
from openvle.queues import QUEUES


@dataclass(frozen=True)
class Operation:
    name: str
    queue: str
    func: Callable[..., Any]  # func(ctx: TaskContext, **params)


_registry: dict[str, Operation] = {}


def operation(name: str, queue: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if queue not in QUEUES:
        raise ValueError(f"operation {name}: unknown queue {queue!r}")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in _registry and _registry[name].func is not func:
            raise ValueError(f"operation {name} registered twice")
        _registry[name] = Operation(name, queue, func)
        return func

    return register


def get_operation(name: str) -> Operation:
    load_jobs()
    try:
        return _registry[name]
    except KeyError:
        raise UnknownOperation(f"no operation named {name!r}; known: {', '.join(sorted(_registry))}") from None


def all_operations() -> dict[str, Operation]:
    load_jobs()
    return dict(_registry)


def load_jobs() -> None:
    import openvle.jobs  # noqa: F401  (importing registers every job module)
