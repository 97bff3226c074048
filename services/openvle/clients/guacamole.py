"""Apache Guacamole's REST API over HTTP(S) (GUACAMOLE_URL, GUACAMOLE_USER, GUACAMOLE_PASSWORD,
GUACAMOLE_DATASOURCE, GUACAMOLE_VERIFY_SSL).

One session token, kept in Redis so every work horse reuses it; renewed when Guacamole answers 403
PERMISSION_DENIED (expired), given back (logout) when a worker shuts down. Guacamole says "exists"
with a 400 duplicate-name error: callers get DuplicateName and look the object up instead. Failures
are sorted, retried and masked as every outside call's are (clients/outside.py).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from openvle.clients.outside import OutsideError, PermanentOutsideError, TransientError, http_failure, retried
from openvle.clients.tls import client_context
from openvle.connections import get_redis
from openvle.errors import PermanentError
from openvle.settings import Settings, get_settings

TOKEN_KEY = "openvle:guacamole:token"


class GuacamoleError(OutsideError):
    system = "Guacamole"


class GuacamoleTransientError(GuacamoleError, TransientError):
    pass


class GuacamolePermanentError(GuacamoleError, PermanentOutsideError):
    pass


class GuacNotFound(GuacamolePermanentError):
    pass


class DuplicateName(GuacamoleError):
    """400 `... already exists.`: the object is there already."""


class _Expired(Exception):
    """403 PERMISSION_DENIED on a call with a token: log in again once."""


def client_link_id(identifier: str, data_source: str) -> str:
    """Guacamole's #/client/<id>: unpadded base64url of identifier NUL 'c' NUL data source."""
    raw = f"{identifier}\0c\0{data_source}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Guacamole:
    def __init__(self, settings: Settings | None = None):
        settings = settings or get_settings()
        if not (settings.GUACAMOLE_URL and settings.GUACAMOLE_USER and settings.GUACAMOLE_PASSWORD):
            raise PermanentError("Guacamole is not configured: set GUACAMOLE_URL, GUACAMOLE_USER, GUACAMOLE_PASSWORD")
        self.base = settings.GUACAMOLE_URL
        self.data_source = settings.GUACAMOLE_DATASOURCE
        self._user = settings.GUACAMOLE_USER
        self._password = settings.GUACAMOLE_PASSWORD.get_secret_value()
        self._http = httpx.Client(base_url=self.base, timeout=settings.GUACAMOLE_TIMEOUT,
                                  verify=client_context(settings.verify("GUACAMOLE_VERIFY_SSL")))

    # --- session --------------------------------------------------------------------------------
    def _token(self, renew: bool = False) -> str:
        redis = get_redis()
        if not renew:
            cached = redis.get(TOKEN_KEY)
            if cached:
                return cached.decode()
        response = self._send("POST", "/api/tokens", data={"username": self._user, "password": self._password})
        if response.status_code == 403:
            raise GuacamolePermanentError(
                "Guacamole refused the login: check GUACAMOLE_USER and GUACAMOLE_PASSWORD")
        body = self._body(response) or {}
        if response.status_code >= 400 or "authToken" not in body:  # a failed login is said as such
            message = body.get("message") if isinstance(body, dict) else None
            raise GuacamoleTransientError(f"Guacamole answered {response.status_code} to the login: "
                                          f"{message or response.reason_phrase or 'no token'}")
        token = body["authToken"]
        redis.set(TOKEN_KEY, token, ex=3600)
        return token

    def logout(self) -> None:
        """Give the shared session back (a worker shutting down); the next call logs in again."""
        redis = get_redis()
        token = redis.get(TOKEN_KEY)
        if token:
            redis.delete(TOKEN_KEY)
            self._send("DELETE", "/api/session", headers={"Guacamole-Token": token.decode()})

    # --- plumbing -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise http_failure(exc, self.base, "GUACAMOLE", GuacamoleTransientError,
                               GuacamolePermanentError) from None

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GuacamoleTransientError(f"Guacamole answered {response.status_code} without JSON") from None

    @retried(lambda self, method, path, json=None: f"{method} {path}")
    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            return self._authorised(method, path, json, renew=False)
        except _Expired:
            return self._authorised(method, path, json, renew=True)

    def _authorised(self, method: str, path: str, json: Any, renew: bool) -> Any:
        token = self._token(renew=renew)
        response = self._send(method, f"/api/session/data/{self.data_source}{path}", json=json,
                              headers={"Guacamole-Token": token})
        if response.status_code < 400:
            return self._body(response)
        body = self._body(response) or {}
        message = str(body.get("message") or response.reason_phrase)
        kind = body.get("type")
        if response.status_code == 403 and kind == "PERMISSION_DENIED" and not renew:
            raise _Expired()
        if response.status_code == 400 and "already exists" in message:
            raise DuplicateName(message)
        if response.status_code == 404:
            raise GuacNotFound(f"Guacamole: {message}")
        if response.status_code in (400, 403):
            raise GuacamolePermanentError(f"Guacamole refused {method} {path}: {message}")
        raise GuacamoleTransientError(f"Guacamole answered {response.status_code}: {message}")

    # --- objects --------------------------------------------------------------------------------
    def user(self, username: str) -> dict | None:
        try:
            return self._call("GET", f"/users/{username}")
        except GuacNotFound:
            return None

    def create_user(self, username: str, password: str, attributes: dict[str, Any]) -> None:
        self._call("POST", "/users", {"username": username, "password": password, "attributes": attributes})

    def update_user(self, username: str, password: str, attributes: dict[str, Any]) -> None:
        self._call("PUT", f"/users/{username}", {"username": username, "password": password, "attributes": attributes})

    def delete_user(self, username: str) -> bool:
        try:
            self._call("DELETE", f"/users/{username}")
            return True
        except GuacNotFound:
            return False

    def connections(self) -> dict[str, dict]:
        return self._call("GET", "/connections") or {}

    def connection_parameters(self, identifier: str) -> dict[str, str]:
        return self._call("GET", f"/connections/{identifier}/parameters") or {}

    def create_connection(self, body: dict[str, Any]) -> str:
        return str(self._call("POST", "/connections", body)["identifier"])

    def update_connection(self, identifier: str, body: dict[str, Any]) -> None:
        self._call("PUT", f"/connections/{identifier}", {**body, "identifier": identifier})

    def delete_connection(self, identifier: str) -> bool:
        try:
            self._call("DELETE", f"/connections/{identifier}")
            return True
        except GuacNotFound:
            return False

    def sharing_profiles(self) -> dict[str, dict]:
        return self._call("GET", "/sharingProfiles") or {}

    def create_sharing_profile(self, connection_id: str, name: str) -> str:
        body = {"primaryConnectionIdentifier": connection_id, "name": name,
                "parameters": {"read-only": "true"}, "attributes": {}}
        return str(self._call("POST", "/sharingProfiles", body)["identifier"])

    def delete_sharing_profile(self, identifier: str) -> bool:
        try:
            self._call("DELETE", f"/sharingProfiles/{identifier}")
            return True
        except GuacNotFound:
            return False

    def grant_read(self, username: str, connections: list[str] = (), sharing_profiles: list[str] = ()) -> None:
        patch = [{"op": "add", "path": f"/connectionPermissions/{c}", "value": "READ"} for c in connections]
        patch += [{"op": "add", "path": f"/sharingProfilePermissions/{s}", "value": "READ"} for s in sharing_profiles]
        if patch:
            self._call("PATCH", f"/users/{username}/permissions", patch)

    def revoke_read(self, username: str, connections: list[str] = (), sharing_profiles: list[str] = ()) -> None:
        """Take READ away (one not held is no error: Guacamole ignores it)."""
        patch = [{"op": "remove", "path": f"/connectionPermissions/{c}", "value": "READ"} for c in connections]
        patch += [{"op": "remove", "path": f"/sharingProfilePermissions/{s}", "value": "READ"}
                  for s in sharing_profiles]
        if patch:
            self._call("PATCH", f"/users/{username}/permissions", patch)

    def permissions(self, username: str) -> dict[str, Any]:
        return self._call("GET", f"/users/{username}/permissions") or {}

    def client_link(self, connection_id: str) -> str:
        return f"{self.base}/#/client/{client_link_id(connection_id, self.data_source)}"


def get_guacamole() -> Guacamole:
    return Guacamole()
