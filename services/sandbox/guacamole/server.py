"""The HTTP server: stdlib ThreadingHTTPServer, plain HTTP (Guacamole normally sits behind a TLS proxy),
serving the API under a path prefix the way Tomcat serves the guacamole webapp (`/guacamole/api/...`)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import admin, wire
from .api import Api, Request
from .state import GuacamoleState

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024  # RequestSizeFilter's default api-max-request-size


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections are closed after this
    # Headers and body leave in one segment: split writes meet delayed ACKs and cost ~40 ms per request.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], prefix: str, state: GuacamoleState, api: Api):
        super().__init__(address, _Handler)
        self.prefix = prefix
        self.state = state
        self.api = api
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # injected latency must not delay stop()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class GuacamoleSimulator:
    """The Guacamole REST API over HTTP at `url` (…/guacamole), backed by an in-memory JDBC database (`state`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, prefix: str = "/guacamole",
                 username: str = "guacadmin", password: str = "guacadmin", data_source: str = "mysql",
                 token_ttl: float = 3600.0, seed: int | None = None):
        self.host = host
        self._port = port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.username = username
        self.password = password
        self.data_source = data_source
        self.state = GuacamoleState(username=username, password=password, data_source=data_source,
                                    token_ttl=token_ttl, seed=seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # a wildcard bind is reached locally
        return f"http://{host}:{self.port}{self.prefix}"

    def start(self) -> GuacamoleSimulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self._port), self.prefix, self.state, Api(self.state))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="guacamole-sandbox", daemon=True)
        self._thread.start()  # the socket is already listening: bound in the constructor
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._port = server.server_address[1]
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GuacamoleSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
