"""What every simulator's HTTP side shares: a request handler base, a threading server whose stop
wakes idle keep-alive connections and cuts injected waits short, and start/stop on a thread."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SimulatorHandler(BaseHTTPRequestHandler):
    """Routes the methods in `methods` to `_dispatch(method)`; others get 501 as from the stdlib."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after this
    # Headers and body leave in one segment: split writes meet delayed ACKs and cost ~40 ms per request.
    wbufsize = -1
    disable_nagle_algorithm = True
    methods: tuple[str, ...] = ("GET", "POST")

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(type(self).__module__).debug("%s - %s", self.address_string(), format % args)

    def _route(self) -> None:
        if self.command in self.methods:
            self._dispatch(self.command)
        else:
            self.send_error(501, f"Unsupported method ({self.command!r})")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _route

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[SimulatorHandler],
                 stopping: threading.Event | None = None, context: ssl.SSLContext | None = None):
        super().__init__(address, handler)
        self.stopping = stopping or threading.Event()
        self.context = context
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # injected latency must not delay stop()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # A TLS handshake runs here, in the connection's own thread, so a slow client cannot block accept().
        request.settimeout(self.RequestHandlerClass.timeout)
        try:
            conn = self.context.wrap_socket(request, server_side=True) if self.context else request
        except OSError:  # ssl.SSLError included
            return
        with self._conns_lock:
            self._conns.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except OSError:
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            if conn is not request:
                try:
                    conn.close()
                except OSError:
                    pass

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Simulator:
    """One simulator's server on its own thread; subclasses build the server (`_build`)."""

    scheme = "http"
    path = ""  # what `url` ends with

    def __init__(self, host: str, port: int, tls_context: ssl.SSLContext | None = None):
        self.host = host
        self._port = port
        self.tls_context = tls_context  # serve HTTPS with it (a test's own CA, as a site's TLS proxy would)
        if tls_context is not None:
            self.scheme = "https"
        self._server: SimulatorServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # a wildcard bind is reached locally
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def _build(self) -> SimulatorServer:
        raise NotImplementedError

    def _stopped(self) -> None:
        """After the server stopped: clean up what `_build` made."""

    def start(self):
        if self._server is not None:
            return self
        self._server = self._build()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"{type(self).__name__}", daemon=True)
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
        self._stopped()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
