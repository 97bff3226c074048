"""Command line: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from ..serve import serve
from .server import MoodleSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.moodle", description="Moodle web services simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--token", default=None, help="the accepted wstoken (default: random, printed at start)")
    parser.add_argument("--seed", action="store_true",
                        help='create categories 1 "Miscellaneous", 2 "OpenVLE labs" and template course 2')
    parser.add_argument("--duplicate-seconds", type=float, default=2.0,
                        help="how long core_course_duplicate_course takes")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the fault-injection RNG")
    args = parser.parse_args(argv)

    sim = MoodleSimulator(host=args.host, port=args.port, token=args.token, duplicate_seconds=args.duplicate_seconds,
                          fault_seed=args.fault_seed)
    if args.seed:
        sim.state.seed()
    return serve(sim, lambda: [
        f"Moodle sandbox listening on {sim.url}/webservice/rest/server.php",
        f"  MOODLE_URL:  {sim.url}",
        f"  token:       {sim.token}",
        f"  admin:       {sim.url}/_sandbox/state",
    ])


if __name__ == "__main__":
    sys.exit(main())
