"""What a Task acts on (Task.target), built and read here only.

A target is a path of parts, the object first, then the step:
  "event:4"                           an event's run (deploy, archive, suspend, resume)
  "event:4/course"                    one of the event's own steps (course, enrol, the final markers)
  "event:4/participant:9/clone"       a participant's step of a run
  "event:4/vm:17", "vm:12"            a click on a VM (start, stop, reset, …), in an event or not
  "event:4/vm:17/fresh_start/clone"   a step of a VM's fresh start
  "periodic:heartbeat"                a periodic run
Pages, the CLI, authorization and the outcome of a run read the same parts through `Target`.
"""

from __future__ import annotations

from dataclasses import dataclass


def event(event_id: int, *steps: str) -> str:
    return "/".join((f"event:{event_id}", *steps))


def participant(event_id: int, participant_id: int, *steps: str) -> str:
    return "/".join((f"event:{event_id}", f"participant:{participant_id}", *steps))


def vm(vm_id: int, event_id: int | None = None, *steps: str) -> str:
    base = (f"event:{event_id}", f"vm:{vm_id}") if event_id is not None else (f"vm:{vm_id}",)
    return "/".join((*base, *steps))


def periodic(name: str) -> str:
    return f"periodic:{name}"


def below(target: str) -> str:
    """A LIKE pattern for every step under `target` (not `target` itself)."""
    return f"{target}/%"


_IDS = {"event": "event_id", "participant": "participant_id", "vm": "vm_id"}


@dataclass(frozen=True)
class Target:
    parts: tuple[str, ...]
    event_id: int | None = None
    participant_id: int | None = None
    vm_id: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> Target:
        """Any stored target; parts that are not `kind:number` are steps (a malformed one stays a step)."""
        parts = tuple(p for p in (text or "").split("/") if p)
        ids: dict[str, int] = {}
        for part in parts:
            kind, _, number = part.partition(":")
            if kind in _IDS and number.isdigit() and _IDS[kind] not in ids:
                ids[_IDS[kind]] = int(number)
        return cls(parts, **ids)

    @property
    def leaf(self) -> str:
        """The last part as written: the step ("clone", "delete-12"), or the object when it has no step."""
        return self.parts[-1] if self.parts else ""
