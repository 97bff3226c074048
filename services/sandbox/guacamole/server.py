"""The HTTP server: stdlib ThreadingHTTPServer, plain HTTP (Guacamole normally sits behind a TLS proxy),
serving the API under a path prefix the way Tomcat serves the guacamole webapp (`/guacamole/api/...`)."""

from __future__ import annotations

import json
import ssl
from urllib.parse import parse_qsl, urlsplit

from ..http import Simulator, SimulatorHandler, SimulatorServer
from . import admin, wire
from .api import Api, Request
from .state import GuacamoleState

MAX_BODY = 2 * 1024 * 1024  # RequestSizeFilter's default api-max-request-size


class _Handler(SimulatorHandler):
    server: _Server
    methods = ("GET", "POST", "PUT", "DELETE", "PATCH")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(wire.Reply(413, b"", None))
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        prefix = self.server.prefix
        path = url.path
        if path.startswith(prefix + "/_sandbox/") or path == prefix + "/_sandbox":
            self._admin(method, path[len(prefix) + len("/_sandbox"):], raw)
        elif path.startswith(prefix + "/api/") or path == prefix + "/api":
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            request = Request(method, path[len(prefix) + len("/api"):], query, self.headers, raw)
            reply = self.server.api.handle(request)
            if reply.drop:
                self.close_connection = True  # injected: the connection closes without any answer
                return
            if reply.delay:
                self.server.pause(reply.delay)
            self._send(reply)
        else:
            self._send(wire.html_not_found(path))

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            status, payload = 400, {"error": "the body is not JSON"}
        else:
            status, payload = admin.handle(self.server.state, method, path, body)
        self._send(wire.Reply(status, wire.dumps(payload), wire.JSON_TYPE))

    def _send(self, reply: wire.Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        if reply.status != 204:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.status != 204:
            self.wfile.write(reply.body)


class _Server(SimulatorServer):
    def __init__(self, address: tuple[str, int], prefix: str, state: GuacamoleState, api: Api,
                 context: ssl.SSLContext | None = None):
        super().__init__(address, _Handler, context=context)
        self.prefix = prefix
        self.state = state
        self.api = api


class GuacamoleSimulator(Simulator):
    """The Guacamole REST API over HTTP at `url` (…/guacamole), backed by an in-memory JDBC database (`state`);
    over HTTPS with `tls_context` (a server-side SSLContext)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, prefix: str = "/guacamole",
                 username: str = "guacadmin", password: str = "guacadmin", data_source: str = "mysql",
                 token_ttl: float = 3600.0, seed: int | None = None, tls_context: ssl.SSLContext | None = None):
        super().__init__(host, port, tls_context)
        self.prefix = self.path = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.username = username
        self.password = password
        self.data_source = data_source
        self.state = GuacamoleState(username=username, password=password, data_source=data_source,
                                    token_ttl=token_ttl, seed=seed)

    def _build(self) -> _Server:
        return _Server((self.host, self._port), self.prefix, self.state, Api(self.state), self.tls_context)
