"""Credentials kept at rest (participants' Guacamole passwords), encrypted with SECRET_KEY.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived from SECRET_KEY with
HKDF, so SECRET_KEY may be any long random string. Key rotation: put the new key in SECRET_KEY and
the old one(s) in SECRET_KEY_PREVIOUS (comma-separated); values sealed under any of them open, new
ones are sealed under SECRET_KEY, and `openvle secrets rotate` re-seals every stored value under it,
after which SECRET_KEY_PREVIOUS can go.

Without SECRET_KEY, the embedded setup (a SQLite database, `make dev`) uses a key file kept beside
its database (made once, mode 0600); anything else refuses to start, naming the variable and how
to make one.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import make_url

from openvle.errors import PermanentError
from openvle.settings import Settings, get_settings

MIN_KEY_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 10
HOW_TO_MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_HKDF_INFO = b"openvle credentials at rest v1"  # another purpose of SECRET_KEY would derive with its own info


class SecretKeyError(Exception):
    """SECRET_KEY is missing or too weak: one line naming the variable and how to make one."""


class CannotDecrypt(PermanentError):
    """A stored value was sealed under a key that is neither SECRET_KEY nor in SECRET_KEY_PREVIOUS."""


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _check_strength(name: str, value: str) -> str:
    value = value.strip()
    if len(value) < MIN_KEY_LENGTH or len(set(value)) < MIN_DISTINCT_CHARACTERS:
        raise SecretKeyError(
            f"{name} is too weak: it needs at least {MIN_KEY_LENGTH} random characters "
            f"(it has {len(value)}); {HOW_TO_MAKE_ONE}")
    return value


def _embedded_key_file(settings: Settings) -> Path | None:
    """The key file of the embedded setup (SQLite): beside the database file; None otherwise."""
    url = make_url(settings.DATABASE_URL)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:":
        return Path("var") / "secret-key"
    return Path(database).with_name(Path(database).name + ".secret-key")


def _read_or_make(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    try:  # O_EXCL: two processes starting at once agree on the first file written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def keys(settings: Settings | None = None) -> list[str]:
    """[current, *previous] key strings; raises SecretKeyError when SECRET_KEY is missing or weak."""
    settings = settings or get_settings()
    if settings.SECRET_KEY is not None:
        current = _check_strength("SECRET_KEY", settings.SECRET_KEY.get_secret_value())
    else:
        key_file = _embedded_key_file(settings)
        if key_file is None:
            raise SecretKeyError(
                "SECRET_KEY is not set: it encrypts the credentials the database keeps (participants' Guacamole "
                f"passwords); {HOW_TO_MAKE_ONE}, put it in .env and keep it safe (without it they cannot be read)")
        current = _check_strength(f"SECRET_KEY (from {key_file})", _read_or_make(key_file))
    previous = settings.SECRET_KEY_PREVIOUS.get_secret_value() if settings.SECRET_KEY_PREVIOUS else ""
    return [current, *[_check_strength("a key in SECRET_KEY_PREVIOUS", k) for k in previous.split(",") if k.strip()]]


def check(settings: Settings | None = None) -> None:
    """At start of the roles that read or write credentials: fail now, not in the middle of a job."""
    keys(settings)


def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@functools.lru_cache(maxsize=8)
def _box(key_list: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(k) for k in key_list])


def box(settings: Settings | None = None) -> MultiFernet:
    return _box(tuple(keys(settings)))


def encrypt(plain: str, settings: Settings | None = None) -> str:
    return box(settings).encrypt(plain.encode()).decode("ascii")


def decrypt(sealed: str, settings: Settings | None = None) -> str:
    try:
        return box(settings).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError):
        raise CannotDecrypt(
            "a stored credential cannot be decrypted with SECRET_KEY or SECRET_KEY_PREVIOUS: was SECRET_KEY "
            "changed without putting the old key in SECRET_KEY_PREVIOUS?") from None


def reencrypt(sealed: str, settings: Settings | None = None) -> str:
    """The same value sealed under the current SECRET_KEY (for `openvle secrets rotate`)."""
    try:
        return box(settings).rotate(sealed.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise CannotDecrypt("a stored credential cannot be decrypted with SECRET_KEY or SECRET_KEY_PREVIOUS") from None
