"""What our clients trust: the system's CAs, a CA bundle an operator names, or (never in production)
nothing. One place for PVE-, GUACAMOLE-, MOODLE- and SMTP_VERIFY_SSL = true, false or a CA bundle path."""

from __future__ import annotations

import ssl


def client_context(verify: bool | str) -> ssl.SSLContext:
    """An SSL context that checks the server's certificate and name, against the CA bundle at `verify`
    when it is a path; `verify=False` checks nothing."""
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def untrusted(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure inside `exc` (httpx wraps it in a ConnectError), if any:
    retrying never helps, the operator must name the CA."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def untrusted_message(what: str, url: str, setting: str, error: ssl.SSLCertVerificationError) -> str:
    return (f"the TLS certificate of {what} at {url} is not trusted ({error.verify_message}): set {setting} "
            "to the CA bundle that signed it")
