"""VMs over HTTP: thin routes over service/vms.py."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS, Id
from openvle.service import fresh_starts, vms
from openvle.service.views import Page, TaskRequest, VmDetailView, VmView

router = APIRouter(prefix="/api/vms", tags=["vms"], responses=ERRORS, dependencies=[Depends(current_actor)])


class MigrateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=64, description="the node to move the VM to")


@router.get("", name="vms.list", response_model=Page[VmView],
            summary="VMs the caller may see (their own; teachers: their events'; admins: all), newest first")
def list_vms(event_id: int | None = Query(None, ge=1, le=2**31 - 1),
             state: str | None = Query(None, max_length=16, description="provisioning, ready, deleting, deleted, "
                                                                        "missing"),
             node: str | None = Query(None, max_length=64),
             before: int | None = Query(None, ge=1, le=2**31 - 1, description="next_before of the previous page"),
             limit: int = Query(100, ge=1, le=500),
             actor: Actor = Depends(current_actor)) -> Page[VmView]:
    return vms.list_vms(actor, event_id, state, node, before, limit)


@router.get("/{vm_id}", name="vms.get", response_model=VmDetailView,
            summary="A VM: state, node, access link, and its latest Tasks")
def get_vm(vm_id: Id, actor: Actor = Depends(current_actor)) -> VmDetailView:
    return vms.get_vm(actor, vm_id)


@router.post("/{vm_id}/migrate", name="vms.migrate", status_code=202, response_model=TaskRequest,
             summary="Admins: move the VM to another node (online when it runs)")
def migrate(vm_id: Id, body: MigrateIn, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return vms.act(actor, vm_id, "migrate", body.target)


@router.post("/{vm_id}/fresh-start", name="vms.fresh_start", status_code=202, response_model=TaskRequest,
             summary="Owner, their teacher, admin: a new copy of the template in place of this VM (same access "
                     "link and password); once per RESET_TO_TEMPLATE_COOLDOWN (429 says when next)")
def fresh_start(vm_id: Id, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return fresh_starts.fresh_start(actor, vm_id)


@router.post("/{vm_id}/{action}", name="vms.act", status_code=202, response_model=TaskRequest,
             summary="Start, stop or reset (owner, their teacher, admin): the Task, or the same one in flight")
def act(vm_id: Id, action: Literal["start", "stop", "reset"], actor: Actor = Depends(current_actor)) -> TaskRequest:
    return vms.act(actor, vm_id, action)
