"""A protocol-level Apache Guacamole 1.5.5 REST API simulator (JDBC/MySQL flavour): token logins and expiry,
connections, connection groups, sharing profiles, users and permission patches with Guacamole's paths, status
codes and error bodies, plus fault injection and {prefix}/_sandbox admin endpoints.

    from sandbox.guacamole import GuacamoleSimulator, client_link_id
    sim = GuacamoleSimulator(username="guacadmin", password="guacadmin").start()
    ... POST f"{sim.url}/api/tokens" (form: username, password) -> authToken; header Guacamole-Token
    sim.stop()
"""

from .links import client_link_id, client_url, parse_client_link_id
from .main import main
from .server import GuacamoleSimulator
from .state import GuacamoleState

__all__ = ["GuacamoleSimulator", "GuacamoleState", "client_link_id", "client_url", "main", "parse_client_link_id"]
