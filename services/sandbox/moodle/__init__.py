"""A protocol-level Moodle web services (REST) simulator: /webservice/rest/server.php with PHP bracket
parameters, Moodle's strict parameter validation and error texts (HTTP 200 JSON with errorcode), the functions
OpenVLE uses, a slow synchronous course duplicate, fault injection and /_sandbox admin endpoints.

    from sandbox.moodle import MoodleSimulator
    sim = MoodleSimulator(token="secret", duplicate_seconds=0.5).start()
    sim.state.seed()
    ... POST {sim.url}/webservice/rest/server.php  wstoken=secret&wsfunction=...&moodlewsrestformat=json
    sim.stop()
"""

from .main import main
from .server import MoodleSimulator
from .state import MoodleState

__all__ = ["MoodleSimulator", "MoodleState", "main"]
