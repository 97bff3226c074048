"""Task targets are built and read in one place: what pages, the CLI, authorization and a run's
outcome read from a stored target is what the jobs wrote into it."""

from __future__ import annotations

import pytest

from openvle import targets
from openvle.targets import Target


@pytest.mark.parametrize(("written", "event_id", "participant_id", "vm_id", "leaf"), [
    (targets.event(4), 4, None, None, "event:4"),
    (targets.event(4, "course"), 4, None, None, "course"),
    (targets.participant(4, 9, "clone"), 4, 9, None, "clone"),
    (targets.participant(4, 9, "delete-12"), 4, 9, None, "delete-12"),
    (targets.vm(17, 4), 4, None, 17, "vm:17"),
    (targets.vm(12), None, None, 12, "vm:12"),
    (targets.vm(17, 4, "fresh_start", "clone"), 4, None, 17, "clone"),
    (targets.periodic("heartbeat"), None, None, None, "periodic:heartbeat"),
])
def test_what_is_written_reads_back(written, event_id, participant_id, vm_id, leaf):
    parsed = Target.parse(written)
    assert (parsed.event_id, parsed.participant_id, parsed.vm_id, parsed.leaf) == (
        event_id, participant_id, vm_id, leaf)


def test_the_stored_forms_are_unchanged():
    """Targets are stored (and matched with LIKE): their text is a format, not a detail."""
    assert targets.participant(4, 9, "clone") == "event:4/participant:9/clone"
    assert targets.vm(17, 4, "fresh_start", "clone") == "event:4/vm:17/fresh_start/clone"
    assert targets.below(targets.event(4)) == "event:4/%"


@pytest.mark.parametrize("text", [None, "", "event:x/participant:/clone", "/", "vm:-1"])
def test_anything_stored_reads_without_an_error(text):
    parsed = Target.parse(text)
    assert parsed.event_id is None and parsed.participant_id is None and parsed.vm_id is None
