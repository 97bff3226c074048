"""OpenVLE Tasks: the background task system of a virtual lab environment."""

__version__ = "0.1.0"
