"""Errors a handler raises; wire.py turns them into PVE's status line and body."""

from __future__ import annotations


class ApiError(Exception):
    """An API error as PVE reports it: HTTP status, message (Perl `die` text, usually ending in a newline)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None, body: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.body = body  # 401 and proxy (595) errors carry an empty body


def fail(message: str) -> ApiError:
    """A synchronous 500, the way a `die "...\\n"` in an API handler surfaces."""
    return ApiError(500, message if message.endswith("\n") else message + "\n")


def param_error(errors: dict[str, str]) -> ApiError:
    """400 `Parameter verification failed.` with the per-parameter map (JSONSchema / raise_param_exc)."""
    return ApiError(400, "Parameter verification failed.\n", errors=errors)
