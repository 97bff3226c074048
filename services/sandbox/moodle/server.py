"""The HTTP server (stdlib ThreadingHTTPServer, plain HTTP as a Moodle behind a TLS proxy sees it) and the
MoodleSimulator that runs it in a background thread."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..http import Simulator, SimulatorHandler, SimulatorServer
from . import admin, phpform, wire
from .api import PATH, Api
from .state import MoodleState

MAX_BODY = 8 * 1024 * 1024  # post_max_size = 8M
NOT_FOUND_HTML = (b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n"
                  b"</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n"
                  b"</body></html>\n")
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 413: "Request Entity Too Large",
           503: "Service Temporarily Unavailable"}


class _Handler(SimulatorHandler):
    server: _Server
    methods = ("GET", "POST", "HEAD")

    def version_string(self) -> str:
        return "Apache"

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(wire.Reply(413, b"", {"Content-Type": "text/html"}))
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            self._admin(method, path, raw)
        elif path == PATH:
            limit = self.server.state.config.max_input_vars
            get = phpform.parse(parse_qsl(url.query, keep_blank_values=True), limit)
            post = phpform.parse(self._form_pairs(raw), limit) if method == "POST" else {}
            reply = self.server.api.handle(get, post)
            if reply.drop:
                self._drop()
                return
            self._send(reply)
        else:
            self._send(wire.Reply(404, NOT_FOUND_HTML, {"Content-Type": "text/html; charset=iso-8859-1"}))

    def _form_pairs(self, raw: bytes) -> list[tuple[str, str]]:
        """$_POST: PHP fills it from urlencoded and multipart bodies only (a JSON body leaves it empty)."""
        if not raw:
            return []
        ctype = self.headers.get("Content-Type") or ""
        kind = ctype.split(";")[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if kind == "multipart/form-data":
            message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
            pairs = []
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name and not part.get_filename():  # files go to $_FILES
                    pairs.append((str(name), (part.get_payload(decode=True) or b"").decode("utf-8", "replace")))
            return pairs
        return []

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            status, payload = 400, {"error": "the body is not JSON"}
        else:
            status, payload = admin.handle(self.server.state, method, path, body)
        self._send(wire.Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"}))

    def _drop(self) -> None:
        self.close_connection = True  # injected: the connection closes without any answer
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, reply: wire.Reply) -> None:
        self.send_response(reply.status, REASONS.get(reply.status, "Error"))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class _Server(SimulatorServer):
    def __init__(self, address: tuple[str, int], state: MoodleState, api: Api, stopping: threading.Event,
                 context: ssl.SSLContext | None = None):
        super().__init__(address, _Handler, stopping=stopping, context=context)
        self.state = state
        self.api = api


class MoodleSimulator(Simulator):
    """Moodle's REST web services over HTTP, backed by an in-memory site (`state`); over HTTPS with
    `tls_context` (a server-side SSLContext)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 duplicate_seconds: float = 2.0, fault_seed: int | None = None,
                 tls_context: ssl.SSLContext | None = None, **config: Any):
        super().__init__(host, port, tls_context)
        self.token = token or secrets.token_hex(16)  # Moodle tokens are 32 hex characters
        self.state = MoodleState(duplicate_seconds=duplicate_seconds, seed=fault_seed, **config)
        self._stopping = threading.Event()  # set by stop(): cuts the API's injected waits short

    def _pause(self, seconds: float) -> bool:
        return not self._stopping.wait(seconds)  # a slow request must not delay stop()

    def _build(self) -> _Server:
        self._stopping.clear()
        api = Api(self.state, self.token, lambda: self.url, self._pause)
        return _Server((self.host, self._port), self.state, api, self._stopping, self.tls_context)
