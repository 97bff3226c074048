"""A simulator's own command line (`python -m sandbox.proxmox` etc.): serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any


def serve(sim: Any, banner: Callable[[], list[str]]) -> int:
    """Start `sim`, print `banner()` (after the start: a port 0 is known only then), run until a
    signal, stop it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    for line in banner():
        print(line, flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()
    return 0
