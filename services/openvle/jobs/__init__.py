"""Job functions by area. Importing this package registers every operation (see operations.py)."""

from openvle.jobs import (  # noqa: F401
    access,
    accounts,
    breaks,
    courses,
    demo,
    events,
    fresh_starts,
    housekeeping,
    lifecycle,
    mail,
    nodes,
    vms,
)
