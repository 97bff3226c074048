"""Exact fault plans in every simulator during a 100-participant deploy: 5xx and refused calls,
storage lock time-outs and lost answers at Proxmox, errors and slow answers at Guacamole and Moodle,
temporary SMTP failures. Every fault is planned (every n-th request), none drawn by chance."""

from __future__ import annotations

import pytest
from scenario import FAST_RECOVERY, Clock, Counts, count_archive, count_deploy, report, sized, wait_settled

import test_events
from openvle.lab_events import request_archive, request_deploy
from test_events import make_event

sims, lab = test_events.sims, test_events.lab

pytestmark = pytest.mark.slow

N = sized(100, 20)


@pytest.mark.timeout(3600)  # a 100-participant deploy and archive on one worker of each role
def test_planned_faults_in_every_simulator_during_a_big_deploy(lab, start_role, settings_env):
    pve, guac, moodle, mail = lab["pve"], lab["guac"], lab["moodle"], lab["mail"]
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    worker = start_role("worker", **env)
    start_role("worker-vm-clone", **env)
    start_role("scheduler", **env)
    event_id = make_event(N, name="Planned Faults")
    # One request in five fails at Proxmox, Guacamole and Moodle; every 10th clone's answer is lost
    # after Proxmox carried it out, and clones 3, 13, 23... meet a storage lock time-out.
    pve.state.set_faults(error_every=5, lost_clone_responses=list(range(5, 10 * N, 10)),
                         clone_lock_timeouts=list(range(3, N, 10)))
    guac.state.set_faults(error_every=5)
    moodle.state.set_faults(error_every=5)
    mail.state.set_temporary_failure(count=10)  # the next 10 deliveries meet a 4xx

    clock = Clock()
    request_deploy(event_id)
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 1800, worker)
    counts = Counts(f"planned faults in every simulator, deploy of {N}", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    hits = {"proxmox": pve.state.error_plan.hits, "guacamole": guac.state.error_plan.hits,
            "moodle": moodle.state.error_plan.hits, "smtp": mail.state.snapshot()["stats"]["temporary_failures"]}
    counts.notes.append("faults met: " + ", ".join(f"{k} {v}" for k, v in hits.items()))
    for sim in (pve, guac, moodle):
        sim.state.set_faults(error_every=0)
    pve.state.set_faults(lost_clone_responses=[], clone_lock_timeouts=[])
    request_archive(event_id)
    archived = wait_settled(event_id, ("archived", "failed"), 1200, worker)
    count_archive(counts, event_id, lab)
    report(counts)

    assert event.status == "deployed", event.status_reason
    assert archived.status == "archived", archived.status_reason
    assert (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice, counts.left_after_archive) == (0,) * 8, counts.line()
    assert all(hits.values()), hits
