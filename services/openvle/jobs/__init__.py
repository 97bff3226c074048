"""Job functions by area. Importing this package registers every operation (see operations.py)."""

from openvle.jobs import access, courses, demo, events, housekeeping, lifecycle, mail, nodes, vms  # noqa: F401
