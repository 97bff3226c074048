"""Job functions by area. Importing this package registers every operation (see operations.py)."""

from openvle.jobs import demo, housekeeping, nodes, vms  # noqa: F401
