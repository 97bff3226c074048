"""Errors as Guacamole's REST layer reports them: an HTTP status plus an APIError body
(`message`, `translatableMessage`, `statusCode`, `expected`, `type`).

The type follows the Java exception class (APIError.Type.fromGuacamoleException); the status follows
the exception's GuacamoleStatus (client errors 400, security 403, not found 404, server 500, unsupported 501).
"""

from __future__ import annotations

from typing import Any

# CredentialsInfo.USERNAME_PASSWORD / EXPIRED_PASSWORD, as serialized Field objects (null `options` left out)
USERNAME_PASSWORD = [{"name": "username", "type": "USERNAME"}, {"name": "password", "type": "PASSWORD"}]
EXPIRED_PASSWORD = USERNAME_PASSWORD + [{"name": "new-password", "type": "PASSWORD"},
                                        {"name": "confirm-new-password", "type": "PASSWORD"}]


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, key: str | None = None,
                 expected: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.key = key  # set only for Translatable exceptions
        self.expected = expected

    def body(self) -> dict[str, Any]:
        if self.key is not None:
            translatable: dict[str, Any] = {"key": self.key, "variables": None}
        else:
            # APIError wraps untranslated messages in this generic key (1.5.x)
            translatable = {"key": "APP.TEXT_UNTRANSLATED", "variables": {"MESSAGE": self.message}}
        return {"message": self.message, "translatableMessage": translatable, "statusCode": None,
                "expected": self.expected, "type": self.type}


def bad_request(message: str, key: str | None = None) -> ApiError:
    """GuacamoleClientException."""
    return ApiError(400, "BAD_REQUEST", message, key=key)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def missing(identifier: str) -> ApiError:
    """DirectoryResource's answer for an identifier the directory does not return."""
    return not_found(f'Not found: "{identifier}"')


def denied(message: str = "Permission denied.") -> ApiError:
    """GuacamoleSecurityException, as the JDBC services throw it."""
    return ApiError(403, "PERMISSION_DENIED", message)


def unauthorized() -> ApiError:
    """GuacamoleUnauthorizedException for a bad, missing or expired token (note the capital D)."""
    return ApiError(403, "PERMISSION_DENIED", "Permission Denied.")


def invalid_login() -> ApiError:
    """What the JDBC provider throws for a wrong username or password (no full stop)."""
    return ApiError(403, "INVALID_CREDENTIALS", "Invalid login", expected=USERNAME_PASSWORD)


def password_expired() -> ApiError:
    return ApiError(403, "INSUFFICIENT_CREDENTIALS", "Password has expired", key="LOGIN.INFO_PASSWORD_EXPIRED",
                    expected=EXPIRED_PASSWORD)


def internal(message: str = "Unexpected internal error") -> ApiError:
    """Any non-Guacamole exception (SQL errors, NPEs) is wrapped by RESTExceptionMapper into this."""
    return ApiError(500, "INTERNAL_ERROR", message)


def unsupported(message: str) -> ApiError:
    """GuacamoleUnsupportedException: HTTP 501, but its API type is still INTERNAL_ERROR."""
    return ApiError(501, "INTERNAL_ERROR", message)


def no_route(status: int) -> ApiError:
    """JAX-RS found no resource (404) or no method on it (405)."""
    if status == 405:
        return ApiError(405, "BAD_REQUEST", "HTTP 405 Method Not Allowed")
    return ApiError(404, "NOT_FOUND", "HTTP 404 Not Found")
