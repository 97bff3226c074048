"""Job functions by area. Importing this package registers every operation (see operations.py)."""

from openvle.jobs import (  # noqa: F401
    access,
    accounts,
    breaks,
    courses,
    demo,
    events,
    housekeeping,
    lifecycle,
    mail,
    nodes,
    vms,
)
