"""Client links of the Guacamole web app: `<base>/#/client/<id>`.

`<id>` is the unpadded base64url of `identifier NUL type NUL dataSource`, type "c" for a connection and
"g" for a balancing group (ClientIdentifier in the web app).
"""

from __future__ import annotations

import base64

CONNECTION = "c"
CONNECTION_GROUP = "g"


def client_link_id(identifier: str, data_source: str, type_: str = CONNECTION) -> str:
    raw = f"{identifier}\0{type_}\0{data_source}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_client_link_id(link_id: str) -> tuple[str, str, str]:
    """(identifier, type, dataSource); the inverse of client_link_id."""
    padded = link_id + "=" * (-len(link_id) % 4)
    identifier, type_, data_source = base64.urlsafe_b64decode(padded).decode().split("\0")
    return identifier, type_, data_source


def client_url(base_url: str, identifier: str, data_source: str, type_: str = CONNECTION) -> str:
    return f"{base_url.rstrip('/')}/#/client/{client_link_id(identifier, data_source, type_)}"
