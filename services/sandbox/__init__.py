"""Simulators of the outside systems (Proxmox VE, later Guacamole, Moodle, SMTP) for development and tests."""
