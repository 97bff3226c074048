"""API token check (PVE::AccessControl / pve-http-server rules; tickets are never issued here)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class TokenAuth:
    def __init__(self, user: str, token_name: str, token_value: str):
        self.user = user
        self.token_name = token_name
        self.token_value = token_value

    @property
    def tokenid(self) -> str:
        return f"{self.user}!{self.token_name}"

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when authenticated, else the 401 reason."""
        cookie = headers.get("Cookie") or ""
        header = (headers.get("Authorization") or "").strip()
        if "PVEAuthCookie=" in cookie or header.startswith("PVEAuthCookie="):
            return "Authentication failed!"  # a ticket wins over a token, and no ticket is valid here
        for prefix in ("PVEAPIToken=", "PVEAPIToken "):
            if header.startswith(prefix):
                tokenid, sep, secret = header[len(prefix):].rpartition("=")  # split at the last "="
                if sep and tokenid == self.tokenid and hmac.compare_digest(secret.encode(), self.token_value.encode()):
                    return None
                return "Authentication failed!"
        return "No ticket"
