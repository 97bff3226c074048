"""Guacamole and Moodle over HTTPS with a site's own CA: the real clients against the simulators
serving a certificate signed by a CA made for the run, trusted through GUACAMOLE_/MOODLE_VERIFY_SSL
(as PVE_VERIFY_SSL does for Proxmox)."""

from __future__ import annotations

import pytest

from conftest import wait_for
from helpers import settled
from openvle.clients.guacamole import Guacamole, GuacamolePermanentError
from openvle.clients.moodle import Moodle, MoodlePermanentError
from openvle.enqueue import enqueue_operation
from sandbox.guacamole import GuacamoleSimulator
from sandbox.moodle import MoodleSimulator
from sandbox.tls import server_context, write_ca_and_server
from test_access import people_and_vm

GUAC_PASSWORD = "guac-tls-pass-3391"
MOODLE_TOKEN = "moodle-tls-token-5520"


@pytest.fixture(scope="module")
def site_ca(tmp_path_factory):
    ca, cert, key = write_ca_and_server(tmp_path_factory.mktemp("site-ca"))
    return {"ca": str(ca), "context": server_context(cert, key)}


@pytest.fixture(scope="module")
def https_sims(site_ca):
    guac = GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin", password=GUAC_PASSWORD,
                              tls_context=site_ca["context"]).start()
    moodle = MoodleSimulator(host="127.0.0.1", port=0, token=MOODLE_TOKEN, duplicate_seconds=0.2,
                             tls_context=site_ca["context"]).start()
    yield {"guac": guac, "moodle": moodle}
    guac.stop()
    moodle.stop()


def env_for(https_sims, verify: str) -> dict[str, str]:
    return {"GUACAMOLE_URL": https_sims["guac"].url, "GUACAMOLE_USER": "guacadmin", "GUACAMOLE_PASSWORD": GUAC_PASSWORD,
            "GUACAMOLE_VERIFY_SSL": verify, "MOODLE_URL": https_sims["moodle"].url, "MOODLE_TOKEN": MOODLE_TOKEN,
            "MOODLE_VERIFY_SSL": verify, "MOODLE_CATEGORY_ID": "2"}


def test_the_simulators_serve_https(https_sims):
    assert https_sims["guac"].url.startswith("https://127.0.0.1:")
    assert https_sims["moodle"].url.startswith("https://127.0.0.1:")


def test_the_clients_trust_a_ca_bundle_and_nothing_else_by_default(https_sims, site_ca, settings_env):
    https_sims["guac"].state.reset()
    https_sims["moodle"].state.reset()
    https_sims["moodle"].state.seed()

    trusting = settings_env(**env_for(https_sims, site_ca["ca"]))
    assert Guacamole(trusting).user("guacadmin") is not None
    assert Moodle(trusting).call("core_webservice_get_site_info")["sitename"]

    default = settings_env(**env_for(https_sims, "true"))  # the system's CAs do not know the site's CA
    with pytest.raises(GuacamolePermanentError) as guac_refused:
        Guacamole(default).user("guacadmin")
    assert "certificate of Guacamole at https://127.0.0.1" in str(guac_refused.value)
    assert "set GUACAMOLE_VERIFY_SSL to the CA bundle that signed it" in str(guac_refused.value)
    with pytest.raises(MoodlePermanentError, match="set MOODLE_VERIFY_SSL to the CA bundle that signed it"):
        Moodle(default).call("core_webservice_get_site_info")

    unchecked = settings_env(**env_for(https_sims, "false"))
    assert Moodle(unchecked).call("core_webservice_get_site_info")["sitename"]


def test_a_worker_provisions_access_and_a_course_over_https(https_sims, site_ca, settings_env, start_role):
    guac, moodle = https_sims["guac"], https_sims["moodle"]
    guac.state.reset()
    moodle.state.reset()
    moodle.state.seed()
    env = env_for(https_sims, site_ca["ca"])
    settings_env(**env)
    vm_id, teacher_ids = people_and_vm()
    worker = start_role("worker", **env)

    access = enqueue_operation("guac.provision", {"vm_id": vm_id, "teacher_ids": teacher_ids})
    course = enqueue_operation("moodle.deploy_course", {"template_course_id": 2, "shortname": "tls-lab",
                                                        "fullname": "TLS Lab"})
    for task in (access, course):
        done = wait_for(lambda t=task: settled(t.id), 30, task.operation, worker)
        assert done.status == "success", done.error
    assert [c["name"] for c in guac.state.snapshot()["connections"]] == ["lab-1-ada"]
    assert any(c["shortname"] == "tls-lab" for c in moodle.state.snapshot()["courses"])
