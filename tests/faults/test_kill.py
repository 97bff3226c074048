"""kill -9 in the middle of the work: the clone worker mid-deploy and mid-archive, a worker mid
Guacamole provisioning. Compose restarts a killed container; here the test starts the role again."""

from __future__ import annotations

import pytest
from scenario import (
    FAST_RECOVERY,
    Clock,
    Counts,
    count_archive,
    count_deploy,
    kill9,
    operation_done,
    report,
    sized,
    wait_settled,
)

import test_events
from conftest import wait_for
from openvle.lab_events import request_archive, request_deploy
from test_events import make_event

sims, lab = test_events.sims, test_events.lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # whole deploys and archives, one worker each


def _roles(start_role, env: dict, *roles: str):
    return {role: start_role(role, **env) for role in roles}


def test_kill9_the_clone_worker_mid_deploy_and_mid_archive(lab, start_role, settings_env):
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    roles = _roles(start_role, env, "worker", "worker-vm-clone", "scheduler")
    n = sized(50, 12)
    half = min(10, n // 2)  # the kill lands with clones (deletes) done and more to come
    event_id = make_event(n, name="Kill Clone")

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("vm.clone") >= half, 300, f"{half} clones done", roles["worker-vm-clone"])
    kill9(roles["worker-vm-clone"])  # clones in flight, slots held, jobs started
    roles["worker-vm-clone"] = start_role("worker-vm-clone", **env)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"kill -9 worker-vm-clone mid-deploy ({n}) and mid-archive", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    counts.notes.append(f"deploy {counts.settle_seconds:.0f}s")
    assert event.status == "deployed", event.status_reason

    clock = Clock()
    request_archive(event_id)
    wait_for(lambda: operation_done("vm.delete") >= half, 300, f"{half} deletes done", roles["worker-vm-clone"])
    kill9(roles["worker-vm-clone"])
    roles["worker-vm-clone"] = start_role("worker-vm-clone", **env)
    event = wait_settled(event_id, ("archived", "failed"), 600, roles["worker"])
    counts.notes.append(f"archive {clock.seconds():.0f}s")
    counts.settle_seconds += clock.seconds()
    count_archive(counts, event_id, lab)
    report(counts)

    assert event.status == "archived", event.status_reason
    assert (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice, counts.left_after_archive) == (0,) * 8, counts.line()


def test_kill9_a_worker_mid_guacamole_provisioning(lab, start_role, settings_env):
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    roles = _roles(start_role, env, "worker", "worker-vm-clone", "scheduler")
    n = sized(20, 10)
    event_id = make_event(n, name="Kill Guac")
    lab["guac"].state.set_faults(latency=0.3)  # each provisioning takes a while: the kill lands inside one

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("guac.provision") >= 3, 300, "3 provisionings done", roles["worker"])
    kill9(roles["worker"])  # mid provisioning (and mid email, on the same worker)
    roles["worker"] = start_role("worker", **env)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"kill -9 worker mid Guacamole provisioning ({n})", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    lab["guac"].state.set_faults(latency=0)

    request_archive(event_id)
    event = wait_settled(event_id, ("archived", "failed"), 600, roles["worker"])
    count_archive(counts, event_id, lab)
    report(counts)

    assert event.status == "archived", event.status_reason
    assert (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice, counts.left_after_archive) == (0,) * 8, counts.line()


def test_kill9_the_mail_worker_after_the_relay_took_an_email(lab, start_role, settings_env):
    """kill -9 of the worker sending an email after the relay kept the message and before its 250
    arrived: the one window SMTP cannot close. The retry sends it again (at least once: never lost)
    with the same Message-ID, so it is one message to the mailbox; nothing else is made twice."""
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    roles = _roles(start_role, env, "worker", "worker-vm-clone", "scheduler")
    n = sized(10, 5)
    event_id = make_event(n, name="Kill Mail")
    mail = lab["mail"].state
    mail.set_slow_reply(seconds=120, count=1)  # the relay keeps the first email, then takes its time to say so

    clock = Clock()
    request_deploy(event_id)
    mail.wait_holding(timeout=300)
    kill9(roles["worker"])  # its horse is waiting for the 250 of a message the relay already has
    roles["worker"] = start_role("worker", **env)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"kill -9 worker after the relay took an email, before its 250 ({n})",
                    settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    report(counts)

    assert event.status == "deployed", event.status_reason
    assert counts.emails_resent == 1, "the email whose 250 was lost was not sent again"
    assert (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice) == (0,) * 7, counts.line()


# --- issue 17: how fast. 6 s linked clones, PVE_CLONE_CONCURRENCY=4, 20 participants ----------------------

SIX_SECOND_CLONES = {**test_events.FAST, "linked_clone": 6.0}


def _lost_clone_attempts(event_id: int) -> list:
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import SubTask, Task

    with session_scope() as session:
        return list(session.execute(select(SubTask.finished_at).join(Task, Task.id == SubTask.task_id).where(
            Task.event_id == event_id, Task.operation == "vm.clone",
            SubTask.error.like("attempt lost%"))).scalars())


def _open_clone_attempts(event_id: int) -> int:
    from sqlalchemy import func, select

    from openvle.db.engine import session_scope
    from openvle.db.models import SubTask, Task

    with session_scope() as session:
        return session.execute(select(func.count()).select_from(SubTask).join(Task, Task.id == SubTask.task_id).where(
            Task.event_id == event_id, Task.operation == "vm.clone", SubTask.status == "processing")).scalar()


def test_a_deploy_of_20_with_6s_clones_without_faults(lab, start_role, settings_env):
    """The yardstick for the kill below: the same deploy, nothing broken."""
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    lab["pve"].state.configure(durations=SIX_SECOND_CLONES)
    roles = _roles(start_role, env, "worker", "worker-vm-clone", "scheduler")
    n = sized(20, 10)
    event_id = make_event(n, name="No Fault")

    clock = Clock()
    request_deploy(event_id)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"no fault, deploy of {n} (6 s clones)", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    report(counts)
    assert event.status == "deployed", event.status_reason


def test_kill9_the_clone_worker_mid_deploy_of_20_costs_seconds(lab, start_role, settings_env):
    """kill -9 of worker-vm-clone while a clone runs in its horse, started again 5 s later (as the
    issue measured it): the lost attempt is recorded within seconds, the replacement takes over the
    queue's scheduling at once, and the clone time it learned before is not spoiled by the gap."""
    import time

    from openvle.db.models import utcnow

    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    lab["pve"].state.configure(durations=SIX_SECOND_CLONES)
    roles = _roles(start_role, env, "worker", "worker-vm-clone", "scheduler")
    n = sized(20, 10)
    event_id = make_event(n, name="Kill Clone Fast")

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("vm.clone") >= 4, 300, "4 clones done", roles["worker-vm-clone"])
    # The kill lands inside a clone job: its look at a running clone is held in Proxmox until then
    # (a clone's UPID: the `worker` role's start jobs look at their tasks too). Seen in a registry
    # instead, it could fall between two jobs or after one handed back to RQ.
    lab["pve"].state.hold_requests("GET /nodes/{node}/tasks/{upid}/status", path_contains="qmclone")
    lab["pve"].state.wait_holding(timeout=300)
    kill9(roles["worker-vm-clone"])
    killed_at = utcnow()
    lab["pve"].state.release_held()
    time.sleep(5)  # the fault plan: started again 5 s later, as compose's restart would
    roles["worker-vm-clone"] = start_role("worker-vm-clone", **env)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"kill -9 worker-vm-clone mid-deploy ({n}, 6 s clones), started again 5 s later",
                    settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    lost = [(at - killed_at).total_seconds() for at in _lost_clone_attempts(event_id)]
    counts.notes.append(f"lost attempt(s) recorded {', '.join(f'{s:.1f}' for s in lost)}s after the kill")
    report(counts)

    assert event.status == "deployed", event.status_reason
    # How soon is a figure (the report line, the README's table), never a timed assertion. What must
    # hold: the killed attempt is recorded as lost (once), none is left open, nothing lost or twice.
    assert len(lost) == 1, f"the killed clone's attempt recorded as lost {len(lost)} times"
    assert _open_clone_attempts(event_id) == 0, "a killed clone's attempt was left open"
    assert (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice) == (0,) * 7, counts.line()
