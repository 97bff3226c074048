"""Command line: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .server import GuacamoleSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.guacamole", description="Guacamole REST API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--prefix", default="/guacamole", help="the webapp's path (default /guacamole)")
    parser.add_argument("--username", default="guacadmin")
    parser.add_argument("--password", default="guacadmin")
    parser.add_argument("--data-source", default="mysql")
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="idle seconds before a token expires")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the fault-injection RNG")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = GuacamoleSimulator(host=args.host, port=args.port, prefix=args.prefix, username=args.username,
                             password=args.password, data_source=args.data_source, token_ttl=args.token_ttl,
                             seed=args.fault_seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    print(f"Guacamole sandbox listening on {sim.url}/api (data source {sim.data_source})", flush=True)
    print(f"  login:      {sim.username} / {'*' * len(sim.password)}", flush=True)
    print(f"  admin:      {sim.url}/_sandbox/state", flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
