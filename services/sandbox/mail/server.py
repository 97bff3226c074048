"""MailCatcher: the SMTP server (aiosmtpd, in its own event-loop thread) and the HTTP viewer
(stdlib ThreadingHTTPServer) over one MailState."""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from ..tls import write_self_signed
from .smtp import HOSTNAME, CatchingController, CatchingHandler, bind, make_authenticator
from .state import MailState
from .web import make_server

log = logging.getLogger(__name__)

TLS_MODES = (None, "starttls", "ssl")


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host  # wildcard: reach locally


class MailCatcher:
    """A real SMTP server that keeps what it accepts (`state`), with its messages served over HTTP.

    auth=("user", "password") makes AUTH PLAIN/LOGIN mandatory before MAIL FROM (allowed without TLS);
    tls="starttls" offers STARTTLS, tls="ssl" speaks TLS from the first byte (SMTPS), both with a
    self-signed certificate written to `ca_path` (use it as the client's CA file)."""

    def __init__(self, host: str = "127.0.0.1", smtp_port: int = 0, http_port: int = 0,
                 auth: tuple[str, str] | None = None, tls: str | None = None,
                 cert_dir: str | Path | None = None, hostname: str = HOSTNAME):
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}, not {tls!r}")
        if auth is not None and (len(auth) != 2 or not all(isinstance(x, str) for x in auth)):
            raise ValueError("auth must be (user, password)")
        self.host = host or "0.0.0.0"
        self._smtp_port = smtp_port
        self._http_port = http_port
        self.auth = tuple(auth) if auth else None
        self.tls = tls
        self.hostname = hostname
        self.state = MailState()
        self.ca_path: str | None = None
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._tmp: str | None = None
        self._controller: CatchingController | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def smtp_port(self) -> int:
        return self._smtp_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def smtp_host(self) -> str:
        """The address clients connect to (a wildcard bind is reached locally)."""
        return _reachable(self.host)

    @property
    def http_url(self) -> str:
        host = _reachable(self.host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.http_port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        directory = self._cert_dir
        if directory is None:
            self._tmp = tempfile.mkdtemp(prefix="mail-sandbox-")
            directory = Path(self._tmp)
        cert, key = write_self_signed(directory, self.host, "OpenVLE mail sandbox")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.ca_path = str(cert)
        return context

    def start(self) -> MailCatcher:
        if self._controller is not None:
            return self
        context = self._tls_context()
        handler = CatchingHandler(self.state, with_auth=self.auth is not None)
        smtp_kwargs = {
            "server_hostname": self.hostname,
            "ident": "ESMTP OpenVLE mail sandbox",
            "auth_require_tls": False,  # tests and `make dev` send AUTH over plain connections
            "authenticator": make_authenticator(*self.auth, self.state) if self.auth else None,
            "tls_context": context if self.tls == "starttls" else None,
            "state": self.state,
        }
        sock = bind(self.host, self._smtp_port)
        self._smtp_port = sock.getsockname()[1]
        controller = CatchingController(handler, sock, ssl_context=context if self.tls == "ssl" else None,
                                        **smtp_kwargs)
        try:
            controller.start()
            self._http = make_server(self.host, self._http_port, self.state)
        except BaseException:
            controller.stop(no_assert=True)
            sock.close()
            self._cleanup_tmp()
            raise
        self._controller = controller
        self._http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="mail-sandbox-http", daemon=True)
        self._http_thread.start()
        log.info("mail sandbox: SMTP on %s:%s, HTTP on %s", self.host, self.smtp_port, self.http_url)
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()
            http.close_connections()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        controller.stop()
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self.ca_path = None

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
