"""Random credentials and their digests: what we hand out once, and the only thing we keep."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(prefix: str) -> str:
    """A credential with 256 random bits; the prefix tells people (and secret scanners) what it is."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def digest(token: str) -> str:
    """What the database keeps. A fast hash is right here: the token is random, not a password."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a browser session, derived from it: a page from another site cannot read
    the cookie, so it cannot compute this either."""
    return hmac.new(session_token.encode(), b"openvle-csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
