"""The sandbox role: the simulators of the outside systems in one process (`SERVICE_ROLE=sandbox`).

It accepts the API token the rest of the system is configured with (PVE_USER, PVE_TOKEN_NAME,
PVE_TOKEN_VALUE) and writes its self-signed CA to SANDBOX_DIR/pve-ca.pem, so pointing
PVE_VERIFY_SSL there makes the real client verify it like any Proxmox.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from pathlib import Path

from openvle.settings import _Settings

log = logging.getLogger("sandbox")


def ca_file(settings: _Settings) -> Path:
    return Path(settings.SANDBOX_DIR) / "pve-ca.pem"


def run(settings: _Settings) -> int:
    from sandbox.proxmox import ProxmoxSimulator

    if not (settings.PVE_USER and settings.PVE_TOKEN_NAME and settings.PVE_TOKEN_VALUE):
        log.error("cannot start: set PVE_USER, PVE_TOKEN_NAME and PVE_TOKEN_VALUE (the token the sandbox accepts)")
        return 1
    pve = ProxmoxSimulator(
        host=settings.SANDBOX_HOST, port=settings.SANDBOX_PVE_PORT, user=settings.PVE_USER,
        token_name=settings.PVE_TOKEN_NAME, token_value=settings.PVE_TOKEN_VALUE.get_secret_value(),
    )
    pve.start()
    if settings.SANDBOX_SEED:
        seed_proxmox(pve.state)
    target = ca_file(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pve.ca_path, target)
    log.info("Proxmox simulator on %s (CA %s); admin API at %s/_sandbox/state", pve.url, target, pve.url)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    pve.stop()
    log.info("sandbox stopped")
    return 0


def seed_proxmox(state) -> None:
    """Three nodes, a shared Ceph storage, and two templates: 9000 on pve1's local-lvm (clones stay
    on pve1, as on a real cluster) and 9001 on Ceph (clones can go to any node)."""
    gib = 1024**3
    state.configure(storages={"ceph": {"type": "rbd", "shared": True}})
    for name in ("pve1", "pve2", "pve3"):
        state.add_node(name=name, maxcpu=8, maxmem=32 * gib)
    state.add_vm(vmid=9000, node="pve1", name="ubuntu-2404-template", template=True, maxmem=2 * gib)
    state.add_vm(vmid=9001, node="pve1", name="ubuntu-2404-shared", template=True, maxmem=2 * gib, storage="ceph")
