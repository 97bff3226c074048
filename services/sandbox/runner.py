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

from openvle.settings import Settings

log = logging.getLogger("sandbox")


def ca_file(settings: Settings) -> Path:
    return Path(settings.SANDBOX_DIR) / "pve-ca.pem"


def run(settings: Settings) -> int:
    """Start every simulator the settings give credentials for; write the CA file last (it tells
    `openvle dev` the sandbox is ready)."""
    from sandbox.mail import MailCatcher
    from sandbox.proxmox import ProxmoxSimulator

    if not (settings.PVE_USER and settings.PVE_TOKEN_NAME and settings.PVE_TOKEN_VALUE):
        log.error("cannot start: set PVE_USER, PVE_TOKEN_NAME and PVE_TOKEN_VALUE (the token the sandbox accepts)")
        return 1
    host = settings.SANDBOX_HOST
    running = []
    pve = ProxmoxSimulator(
        host=host, port=settings.SANDBOX_PVE_PORT, user=settings.PVE_USER,
        token_name=settings.PVE_TOKEN_NAME, token_value=settings.PVE_TOKEN_VALUE.get_secret_value(),
    ).start()
    running.append(pve)
    if settings.SANDBOX_SEED:
        seed_proxmox(pve.state)
    log.info("Proxmox simulator on %s; admin API at %s/_sandbox/state", pve.url, pve.url)

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every connection at INFO
    mail = MailCatcher(host=host, smtp_port=settings.SANDBOX_SMTP_PORT, http_port=settings.SANDBOX_MAIL_HTTP_PORT)
    running.append(mail.start())
    log.info("mail catcher: SMTP on %s:%s, caught emails at %s", host, mail.smtp_port, mail.http_url)

    if settings.GUACAMOLE_USER and settings.GUACAMOLE_PASSWORD:
        from sandbox.guacamole import GuacamoleSimulator

        guac = GuacamoleSimulator(host=host, port=settings.SANDBOX_GUACAMOLE_PORT, username=settings.GUACAMOLE_USER,
                                  password=settings.GUACAMOLE_PASSWORD.get_secret_value(),
                                  data_source=settings.GUACAMOLE_DATASOURCE)
        guac.start()
        running.append(guac)
        log.info("Guacamole simulator on %s", guac.url)
    if settings.MOODLE_TOKEN:
        from sandbox.moodle import MoodleSimulator

        moodle = MoodleSimulator(host=host, port=settings.SANDBOX_MOODLE_PORT,
                                 token=settings.MOODLE_TOKEN.get_secret_value())
        moodle.start()
        running.append(moodle)
        if settings.SANDBOX_SEED:
            moodle.state.seed()
        log.info("Moodle simulator on %s", moodle.url)

    target = ca_file(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pve.ca_path, target)
    log.info("sandbox ready (Proxmox CA at %s)", target)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for simulator in reversed(running):
        simulator.stop()
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
