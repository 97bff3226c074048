"""The SMTP side: aiosmtpd's server with a catching handler, optional AUTH, and the injected refusals.

Replies follow Postfix's wording, so a client sees what a real relay would answer:
  RCPT TO a rejected address   550 5.1.1 <addr>: Recipient address rejected: User unknown
  MAIL FROM while failing      421 4.3.2 Service not available, try again later   (then the connection closes)
  MAIL FROM without AUTH       530 5.7.0 Authentication required                  (only when auth is configured)
  AUTH with wrong credentials  535 5.7.8 Authentication credentials invalid
A slow reply keeps the message, then waits before its 250 (a relay scanning content).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .parse import parse_message
from .state import MailState

log = logging.getLogger(__name__)

HOSTNAME = "mail.sandbox.openvle.test"
TEMPORARY_FAILURE = "421 4.3.2 Service not available, try again later"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_DISABLED = "503 5.5.1 Error: authentication not enabled"


class _DropLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 warns that Session.login_data is deprecated on every successful AUTH, from its own code."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataWarning())


def rejected_reply(address: str) -> str:
    return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


class CatchingHandler:
    """aiosmtpd handler hooks: refuse the recipients the state says to, store every accepted message."""

    # aiosmtpd takes every handler attribute named auth_* for an AUTH mechanism: hence `with_auth`
    def __init__(self, state: MailState, with_auth: bool):
        self.state = state
        self.with_auth = with_auth

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do what aiosmtpd otherwise does itself
        if not self.with_auth:  # aiosmtpd advertises AUTH even with no credentials to check against
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.state.is_rejected(address):
            self.state.count("rejected_recipients")
            log.info("refused recipient %s", address)
            return rejected_reply(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            message = parse_message(raw, envelope.mail_from or "", envelope.rcpt_tos)
        except Exception:
            log.exception("cannot parse a message from %s", envelope.mail_from)
            return "451 4.3.0 Error: queue file write error"
        login = session.auth_data
        message["auth_user"] = login.login.decode("utf-8", "replace") if isinstance(login, LoginPassword) else None
        transport = server.transport
        message["tls"] = transport is not None and transport.get_extra_info("ssl_object") is not None
        stored = self.state.add(message)
        log.info("caught message %s from %s to %s: %s", stored["id"], stored["mail_from"],
                 ", ".join(stored["rcpt_tos"]), stored["subject"])
        delay = self.state.take_slow_reply()
        if delay:
            log.info("holding the reply to message %s for %s s", stored["id"], delay)
            try:
                await asyncio.sleep(delay)
            finally:
                self.state.reply_sent()
        return f"250 2.0.0 Ok: queued as {stored['id']}"


def make_authenticator(user: str, password: str, state: MailState):
    expected = (user.encode(), password.encode())

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login_ok = hmac.compare_digest(auth_data.login, expected[0])
            password_ok = hmac.compare_digest(auth_data.password, expected[1])
            if login_ok and password_ok:
                return AuthResult(success=True, auth_data=auth_data)
        state.count("auth_failures")
        log.info("%s authentication failed for %r", mechanism, getattr(auth_data, "login", None))
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    return authenticator


class CatchingSMTP(SMTP):
    """aiosmtpd's SMTP session plus the temporary-failure window and 'AUTH required when configured'."""

    def __init__(self, handler: CatchingHandler, *, state: MailState, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self._state = state
        self._auth_enabled = handler.with_auth

    async def check_auth_needed(self, caller_method: str) -> bool:
        # aiosmtpd's own auth_required warns when TLS is not required as well; the sandbox allows plain AUTH
        assert self.session is not None
        if self._auth_enabled and not self.session.authenticated:
            await self.push(AUTH_REQUIRED)
            return True
        return False

    async def smtp_AUTH(self, arg: str) -> None:
        if not self._auth_enabled:
            await self.push(AUTH_DISABLED)
            return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None
        if self.session.host_name and self._state.take_temporary_failure():
            # RFC 5321 4.2.2: 421 means the server closes the channel, as QUIT does
            log.info("answered MAIL FROM with 421 (temporary failure)")
            await self.push(TEMPORARY_FAILURE)
            assert self._handler_coroutine is not None and self.transport is not None
            self._handler_coroutine.cancel()
            self.transport.close()
            return
        await super().smtp_MAIL(arg)


class CatchingController(Controller):
    """aiosmtpd's threaded Controller on a socket bound beforehand, so port 0 works and the port is known."""

    def __init__(self, handler: CatchingHandler, sock: socket.socket, *, ssl_context: ssl.SSLContext | None,
                 **smtp_kwargs: Any):
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, ssl_context=ssl_context, **smtp_kwargs)
        self._sock = sock

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def factory(self) -> SMTP:
        return CatchingSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False, backlog=128)

