"""A protocol-level Proxmox VE API simulator: HTTPS, token auth, PVE's paths, parameter checks, status lines,
error texts, async tasks with UPIDs, locks and delays, plus fault injection and /_sandbox admin endpoints.

    from sandbox.proxmox import ProxmoxSimulator
    sim = ProxmoxSimulator(token_value="secret", auth_fail_delay=0).start()
    ... ProxmoxAPI("127.0.0.1", port=sim.port, user=sim.user, token_name=sim.token_name,
                   token_value=sim.token_value, verify_ssl=sim.ca_path)
    sim.stop()
"""

from ..clock import Clock, FakeClock
from .main import main
from .server import ProxmoxSimulator
from .state import ClusterState

__all__ = ["Clock", "ClusterState", "FakeClock", "ProxmoxSimulator", "main"]
