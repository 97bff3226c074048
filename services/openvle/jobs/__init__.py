"""Job functions by area. Importing this package registers every operation (see operations.py)."""

from openvle.jobs import access, courses, demo, housekeeping, mail, nodes, vms  # noqa: F401
