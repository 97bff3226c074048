"""Command line: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from ..serve import serve
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

    sim = GuacamoleSimulator(host=args.host, port=args.port, prefix=args.prefix, username=args.username,
                             password=args.password, data_source=args.data_source, token_ttl=args.token_ttl,
                             seed=args.fault_seed)
    return serve(sim, lambda: [
        f"Guacamole sandbox listening on {sim.url}/api (data source {sim.data_source})",
        f"  login:      {sim.username} / {'*' * len(sim.password)}",
        f"  admin:      {sim.url}/_sandbox/state",
    ])


if __name__ == "__main__":
    sys.exit(main())
