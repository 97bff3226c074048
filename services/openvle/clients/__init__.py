"""Clients of the outside world: Proxmox (proxmoxer), later Guacamole, Moodle, SMTP, MongoDB."""
