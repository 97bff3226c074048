"""Command line: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from ..serve import serve
from .server import ProxmoxSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.proxmox", description="Proxmox VE API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--seed", action="store_true", help="create nodes pve1..pve3 and template 9000")
    parser.add_argument("--user", default="openvle@pve")
    parser.add_argument("--token-name", default="tasks")
    parser.add_argument("--token-value", default=None, help="default: a random UUID, printed at start")
    parser.add_argument("--auth-fail-delay", type=float, default=3.0)
    parser.add_argument("--cert-dir", default=None, help="where cert.pem/key.pem go (default: a temp dir)")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the fault-injection RNG")
    args = parser.parse_args(argv)

    sim = ProxmoxSimulator(host=args.host, port=args.port, user=args.user, token_name=args.token_name,
                           token_value=args.token_value, auth_fail_delay=args.auth_fail_delay,
                           seed=args.fault_seed, cert_dir=args.cert_dir)
    if args.seed:
        sim.state.seed_cluster()
    return serve(sim, lambda: [
        f"Proxmox sandbox listening on {sim.url}/api2/json",
        f"  CA bundle:  {sim.ca_path}",
        f"  API token:  PVEAPIToken={sim.user}!{sim.token_name}={sim.token_value}",
        f"  admin:      {sim.url}/_sandbox/state",
    ])


if __name__ == "__main__":
    sys.exit(main())
