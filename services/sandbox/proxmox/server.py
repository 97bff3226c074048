"""The HTTPS server: stdlib ThreadingHTTPServer with TLS, because the status line's reason phrase must be
set freely (PVE puts the error's first line there and proxmoxer reports exactly that)."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..clock import Clock
from ..http import Simulator, SimulatorHandler, SimulatorServer
from ..tls import write_self_signed
from . import admin, wire
from .api import PREFIX, Api
from .auth import TokenAuth
from .state import ClusterState

MAX_BODY = 4 * 1024 * 1024


class _Handler(SimulatorHandler):
    server: _Server
    methods = ("GET", "POST", "PUT", "DELETE")

    def version_string(self) -> str:
        return "pve-api-daemon/3.0"

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(wire.Reply(413, "Request Entity Too Large"))
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            self._admin(method, path, raw)
        elif path == PREFIX or path.startswith(PREFIX + "/"):
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                params.update(self._body_params(raw))
            except ValueError as exc:
                self._send(wire.Reply(400, f"Invalid request body - {exc}"))
                return
            reply = self.server.api.handle(method, path[len(PREFIX):] or "/", params, self.headers)
            if reply.drop:
                self.close_connection = True  # injected: the connection closes without any answer
                return
            if reply.delay:
                self.server.pause(reply.delay)
            self._send(reply)
        else:
            self._send(wire.Reply(501, f"Method '{method} {path}' not implemented"))

    def _body_params(self, raw: bytes) -> dict[str, Any]:
        if not raw:
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json":
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            return data
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            status, payload = 400, {"error": "the body is not JSON"}
        else:
            status, payload = admin.handle(self.server.state, method, path, body)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        self._send(wire.Reply(status, reason, json.dumps(payload).encode()), admin_reply=True)

    def _send(self, reply: wire.Reply, admin_reply: bool = False) -> None:
        self.send_response(reply.status, reply.reason)
        self.send_header("Content-Type", "application/json" if admin_reply else wire.JSON_TYPE)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Pragma", "no-cache")
        if reply.status >= 400:
            self.send_header("Connection", "close")  # pve-http-server closes the connection after errors
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class _Server(SimulatorServer):
    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, state: ClusterState, api: Api):
        super().__init__(address, _Handler, context=context)
        self.state = state
        self.api = api


class ProxmoxSimulator(Simulator):
    """A Proxmox VE API over HTTPS, backed by an in-memory cluster (`state`)."""

    scheme = "https"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, user: str = "openvle@pve", token_name: str = "tasks",
                 token_value: str | None = None, auth_fail_delay: float = 3.0,
                 durations: dict[str, float] | None = None, storage_concurrency: int = 4, lock_wait: float = 1.0,
                 seed: int | None = None, clock: Clock | None = None, cert_dir: str | Path | None = None):
        super().__init__(host, port)
        self.auth = TokenAuth(user, token_name, token_value or str(uuid.uuid4()))
        self.state = ClusterState(clock=clock, durations=durations, storage_concurrency=storage_concurrency,
                                  lock_wait=lock_wait, auth_fail_delay=auth_fail_delay, seed=seed)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._tmp: str | None = None
        self.ca_path = ""

    @property
    def user(self) -> str:
        return self.auth.user

    @property
    def token_name(self) -> str:
        return self.auth.token_name

    @property
    def token_value(self) -> str:
        return self.auth.token_value

    def _build(self) -> _Server:
        directory = self._cert_dir
        if directory is None:
            self._tmp = tempfile.mkdtemp(prefix="pve-sandbox-")
            directory = Path(self._tmp)
        cert, key = write_self_signed(directory, self.host, "OpenVLE Proxmox sandbox")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.ca_path = str(cert)
        return _Server((self.host, self._port), context, self.state, Api(self.state, self.auth))

    def _stopped(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
