"""Proxmox VE through proxmoxer, with every failure sorted into transient or permanent.

Transient (connection errors, timeouts, lock timeouts, "got no worker upid", 5xx from contention):
retried briefly inside the call (outside.retried), then by the queue's retries. Permanent (parameter
verification, a template, VM or node that does not exist, 401/403, a TLS certificate not trusted): a
PermanentError with a message an admin understands. The API token never appears in a message:
proxmoxer's errors carry the status line and body, never the request headers, and every message is
masked (outside.masked) in case Proxmox echoes it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from proxmoxer import ProxmoxAPI, ResourceException

from openvle.clients.outside import OutsideError, PermanentOutsideError, TransientError, retried
from openvle.clients.tls import untrusted, untrusted_message
from openvle.errors import PermanentError
from openvle.settings import Settings, get_settings

T = TypeVar("T")


def dns_name(text: str) -> str:
    """Proxmox VM names must be DNS names: lowercase letters, digits and hyphens, at most 63."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "vm"



class ProxmoxError(OutsideError):
    """A Proxmox call or task failed; `message` is what Proxmox said."""

    system = "Proxmox"


class ProxmoxTransientError(ProxmoxError, TransientError):
    """Worth trying again: contention, a lock timeout, a node or the network briefly away."""


class ProxmoxPermanentError(ProxmoxError, PermanentOutsideError):
    """Trying again cannot help."""


class NotFound(ProxmoxPermanentError):
    """The VM (or node) is not where we asked: callers that expect this (delete) catch it."""


class AnswerLost(ProxmoxTransientError):
    """A call that changes something got no answer (connection lost, timed out): it may or may not
    have been carried out. Never sent again blindly: the caller looks at what is there first."""


class VmidTaken(ProxmoxTransientError):
    """`unable to create VM N: config file already exists`: another caller took the id."""


# What Proxmox says when trying again cannot help (texts from qemu-server / pve-manager).
_PERMANENT = re.compile(
    r"not supported|not allowed|no such cluster node|protection mode enabled|hostname lookup|"
    r"you can't start a vm if it's a template|does not exist|only root may|not available with api token|"
    r"no options specified|used in ha resources|uses local storage",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"Configuration file '.*' does not exist|does not exist", re.IGNORECASE)
_VMID_TAKEN = re.compile(r"config file already exists|already exists", re.IGNORECASE)


def classify(status: int | None, message: str, errors: dict | None = None) -> ProxmoxError:
    """Turn a failed call (HTTP status and Proxmox's message) or a failed task (status None) into
    the error class that says whether to retry."""
    text = message.strip()
    if errors:
        details = "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(errors.items()))
        text = f"{text} ({details})" if text else details
    if status in (401, 403):
        return ProxmoxPermanentError(
            f"Proxmox refused the API token ({status} {text}): check PVE_USER, PVE_TOKEN_NAME, "
            "PVE_TOKEN_VALUE and the token's privileges"
        )
    if status == 400:
        return ProxmoxPermanentError(f"Proxmox rejected the request: {text}")
    if _VMID_TAKEN.search(text):
        return VmidTaken(text)
    if _NOT_FOUND.search(text) and "lock" not in text:
        return NotFound(text)
    if _PERMANENT.search(text):
        return ProxmoxPermanentError(text)
    return ProxmoxTransientError(text or f"HTTP {status}")


def _translate(exc: Exception) -> ProxmoxError:
    if isinstance(exc, ResourceException):
        return classify(exc.status_code, str(exc.content or exc.status_message or ""), exc.errors)
    if (cert_error := untrusted(exc)) is not None:  # refused at the handshake: nothing was sent
        settings = get_settings()
        url = f"https://{settings.PVE_HOST}:{settings.PVE_PORT}"
        return ProxmoxPermanentError(untrusted_message("Proxmox", url, "PVE_VERIFY_SSL", cert_error))
    if isinstance(exc, requests.Timeout):
        return ProxmoxTransientError("Proxmox did not answer in time (PVE_TIMEOUT)")
    if isinstance(exc, requests.ConnectionError):
        return ProxmoxTransientError(f"cannot reach Proxmox: {type(exc).__name__}")
    if isinstance(exc, requests.RequestException):
        return ProxmoxTransientError(f"HTTP error talking to Proxmox: {type(exc).__name__}")
    raise exc


def _call(what: str, fn: Callable[[], T], changes: bool = False) -> T:
    """One API call (`what` names it in the log): proxmoxer/requests errors become ProxmoxErrors;
    transient ones retried briefly.

    A call that `changes` something (clone, start, destroy...) is retried only after an answer that
    says it was not done (a 5xx); a lost answer raises AnswerLost: sending it again could clone a
    second VM, so the job finds out what happened first (jobs/vms.py). VmidTaken is not retried
    either: the caller picks another id."""

    @retried(what, not_for=(VmidTaken, AnswerLost))
    def attempt() -> T:
        try:
            return fn()
        except ResourceException as exc:
            raise _translate(exc) from None
        except requests.RequestException as exc:
            error = _translate(exc)
            if changes and isinstance(error, TransientError) and not isinstance(exc, requests.ConnectTimeout):
                raise AnswerLost(f"Proxmox's answer was lost ({type(exc).__name__}): the request may have "
                                 "been carried out") from None  # it may have arrived
            raise error from None

    return attempt()


def _bools(params: dict[str, Any]) -> dict[str, Any]:
    """Proxmox rejects Python's True ('True'): send 1/0. None means 'not sent'."""
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in params.items() if v is not None}


class Proxmox:
    """The calls the jobs make. Each returns plain data (dicts, lists, UPIDs)."""

    def __init__(self, settings: Settings | None = None):
        settings = settings or get_settings()
        if not (settings.PVE_HOST and settings.PVE_USER and settings.PVE_TOKEN_NAME and settings.PVE_TOKEN_VALUE):
            raise PermanentError(
                "Proxmox is not configured: set PVE_HOST, PVE_USER, PVE_TOKEN_NAME and PVE_TOKEN_VALUE"
            )
        verify = settings.verify("PVE_VERIFY_SSL")
        self.api = ProxmoxAPI(
            settings.PVE_HOST,
            port=settings.PVE_PORT,
            user=settings.PVE_USER,
            token_name=settings.PVE_TOKEN_NAME,
            token_value=settings.PVE_TOKEN_VALUE.get_secret_value(),
            verify_ssl=verify,
            timeout=settings.PVE_TIMEOUT,
            service="PVE",
        )

    # --- cluster --------------------------------------------------------------------------------
    def nodes(self) -> list[dict]:
        return _call("GET /nodes", lambda: self.api.nodes.get())

    def node_status(self, node: str) -> dict:
        return _call(f"GET /nodes/{node}/status", lambda: self.api.nodes(node).status.get())

    def vm_resources(self) -> list[dict]:
        """Every VM and template in the cluster, wherever it runs."""
        return _call("GET /cluster/resources?type=vm", lambda: self.api.cluster.resources.get(type="vm"))

    def storage_resources(self) -> list[dict]:
        return _call("GET /cluster/resources?type=storage",
                     lambda: self.api.cluster.resources.get(type="storage"))

    def locate(self, vmid: int) -> dict | None:
        """The cluster resource of `vmid` (node, status, lock, name, tags), or None when it does not exist."""
        return next((r for r in self.vm_resources() if int(r.get("vmid", -1)) == vmid), None)

    # --- one VM ---------------------------------------------------------------------------------
    def vm_status(self, node: str, vmid: int) -> dict:
        return _call(f"GET /nodes/{node}/qemu/{vmid}/status/current",
                     lambda: self.api.nodes(node).qemu(vmid).status.current.get())

    def vm_config(self, node: str, vmid: int) -> dict:
        return _call(f"GET /nodes/{node}/qemu/{vmid}/config", lambda: self.api.nodes(node).qemu(vmid).config.get())

    def set_config(self, node: str, vmid: int, **options: Any) -> None:
        _call(f"PUT /nodes/{node}/qemu/{vmid}/config",
              lambda: self.api.nodes(node).qemu(vmid).config.put(**_bools(options)))

    def clone(self, node: str, template_vmid: int, newid: int, **options: Any) -> str:
        return _call(f"POST /nodes/{node}/qemu/{template_vmid}/clone",
                     lambda: self.api.nodes(node).qemu(template_vmid).clone.post(newid=newid, **_bools(options)),
                     changes=True)

    def start(self, node: str, vmid: int) -> str:
        return _call(f"POST /nodes/{node}/qemu/{vmid}/status/start",
                     lambda: self.api.nodes(node).qemu(vmid).status.start.post(), changes=True)

    def stop(self, node: str, vmid: int) -> str:
        return _call(f"POST /nodes/{node}/qemu/{vmid}/status/stop",
                     lambda: self.api.nodes(node).qemu(vmid).status.stop.post(), changes=True)

    def reset(self, node: str, vmid: int) -> str:
        return _call(f"POST /nodes/{node}/qemu/{vmid}/status/reset",
                     lambda: self.api.nodes(node).qemu(vmid).status.reset.post(), changes=True)

    def destroy(self, node: str, vmid: int) -> str:
        return _call(f"DELETE /nodes/{node}/qemu/{vmid}", lambda: self.api.nodes(node).qemu(vmid).delete(**_bools(
            {"purge": True, "destroy-unreferenced-disks": True})), changes=True)

    def migrate(self, node: str, vmid: int, target: str, online: bool) -> str:
        # A running VM on local storage live-migrates only with its disks; on shared storage the
        # option changes nothing.
        options = {"target": target, "online": online, "with-local-disks": True if online else None}
        return _call(f"POST /nodes/{node}/qemu/{vmid}/migrate",
                     lambda: self.api.nodes(node).qemu(vmid).migrate.post(**_bools(options)), changes=True)

    # --- tasks ----------------------------------------------------------------------------------
    def task_status(self, upid: str) -> dict:
        return _call(f"GET the status of task {upid}", lambda: self.api.nodes(upid_node(upid)).tasks(upid).status.get())

    def active_tasks(self, node: str, task_type: str, limit: int) -> list[dict]:
        """The node's tasks of `task_type` that run or ended but are not yet archived: status "RUNNING"
        while they run, else their exit status (GET /nodes/{node}/tasks?source=active)."""
        return _call(f"GET /nodes/{node}/tasks?source=active&typefilter={task_type}",
                     lambda: self.api.nodes(node).tasks.get(source="active", typefilter=task_type, limit=limit))

    def task_error(self, upid: str, status: dict) -> ProxmoxError | None:
        """None when the finished task succeeded, else its error classified (log tail for context)."""
        exitstatus = str(status.get("exitstatus", ""))
        if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
            return None
        return classify(None, exitstatus or "task ended without an exit status")


def upid_node(upid: str) -> str:
    """UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>: → node."""
    parts = upid.split(":")
    if len(parts) < 9 or parts[0] != "UPID":
        raise ProxmoxPermanentError(f"not a Proxmox task id: {upid!r}")
    return parts[1]


@functools.lru_cache(maxsize=4)
def _cached(host: str | None, port: int, pid: int) -> Proxmox:
    return Proxmox()


def get_proxmox() -> Proxmox:
    """The process's client: one HTTPS session reused across calls, never shared across a fork."""
    settings = get_settings()
    return _cached(settings.PVE_HOST, settings.PVE_PORT, os.getpid())
