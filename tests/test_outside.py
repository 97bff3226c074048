"""One way to call an outside system (clients/outside.py): every client's errors are the shared
transient/permanent ones, transient failures are tried again inside the call with one log line per
retry, and a secret an outside system echoes back never reaches the error's message. The real
clients against the simulators."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest

from helpers import fresh_cluster, started_proxmox
from openvle.clients import guacamole, moodle, proxmox, smtp
from openvle.clients.outside import OutsideError, PermanentOutsideError, TransientError
from openvle.errors import PermanentError
from sandbox.guacamole import GuacamoleSimulator
from sandbox.moodle import MoodleSimulator

GUAC_PASSWORD = "guac-echo-pass-7310"
MOODLE_TOKEN = "moodle-echo-token-2284"
MASK = "********"


@pytest.fixture(scope="module")
def pve_server():
    yield from started_proxmox()


@pytest.fixture(scope="module")
def guac_server():
    server = GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin", password=GUAC_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moodle_server():
    server = MoodleSimulator(host="127.0.0.1", port=0, token=MOODLE_TOKEN, duplicate_seconds=0.2).start()
    yield server
    server.stop()


@pytest.fixture
def systems(pve_server, guac_server, moodle_server, settings_env):
    """The three simulators afresh, and settings naming all three (their secrets are what is masked)."""
    pve = fresh_cluster(pve_server, settings_env, {"linked_clone": 0.2, "full_clone": 0.2})
    guac_server.state.reset()
    moodle_server.state.reset()
    moodle_server.state.seed()
    settings = settings_env(**pve.env, GUACAMOLE_URL=guac_server.url, GUACAMOLE_USER="guacadmin",
                            GUACAMOLE_PASSWORD=GUAC_PASSWORD, MOODLE_URL=moodle_server.url, MOODLE_TOKEN=MOODLE_TOKEN)
    yield SimpleNamespace(pve=pve, guac=guac_server, moodle=moodle_server, proxmox=proxmox.Proxmox(settings),
                          guacamole=guacamole.Guacamole(settings), moodle_client=moodle.Moodle(settings))
    moodle_server.state.set_faults(error_every=0)


def retry_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "openvle.outside"]


def test_every_clients_errors_are_the_shared_ones_under_their_own_names():
    for transient in (proxmox.ProxmoxTransientError, proxmox.AnswerLost, proxmox.VmidTaken,
                      guacamole.GuacamoleTransientError, moodle.MoodleTransientError, smtp.MailTransientError):
        assert issubclass(transient, TransientError) and not issubclass(transient, PermanentError), transient
    for permanent in (proxmox.ProxmoxPermanentError, proxmox.NotFound, guacamole.GuacamolePermanentError,
                      guacamole.GuacNotFound, moodle.MoodlePermanentError, smtp.MailPermanentError):
        assert issubclass(permanent, PermanentOutsideError) and issubclass(permanent, PermanentError), permanent
    # "it exists": neither kind, the caller looks the object up
    for exists in (guacamole.DuplicateName, moodle.ShortnameTaken):
        assert issubclass(exists, OutsideError) and not issubclass(exists, TransientError | PermanentError)
    error = moodle.MoodlePermanentError("Moodle f: no", "invalidparameter")
    assert (error.system, error.message, str(error), error.errorcode) == ("Moodle", "Moodle f: no", "Moodle f: no",
                                                                            "invalidparameter")


def test_a_secret_the_outside_system_echoes_is_masked_in_the_error(systems):
    token = systems.pve.token_value
    with pytest.raises(proxmox.ProxmoxPermanentError) as pve_refused:  # 400: "got '<the value>'"
        systems.proxmox.set_config("pve1", 9000, cores=token)
    assert pve_refused.value.message.startswith("Proxmox rejected the request: Parameter verification failed.")

    with pytest.raises(guacamole.GuacamolePermanentError) as guac_refused:  # 400: Unsupported protocol: "<it>"
        systems.guacamole.create_connection({"name": "echo", "parentIdentifier": "ROOT", "protocol": GUAC_PASSWORD,
                                "parameters": {}, "attributes": {}})
    assert guac_refused.value.message.startswith("Guacamole refused POST /connections:")

    with pytest.raises(moodle.MoodlePermanentError) as moodle_refused:  # invalidparameter: the value is "<it>"
        systems.moodle_client.call("core_enrol_get_enrolled_users", courseid=MOODLE_TOKEN)
    assert moodle_refused.value.errorcode == "invalidparameter"

    for refused, secret in ((pve_refused, token), (guac_refused, GUAC_PASSWORD), (moodle_refused, MOODLE_TOKEN)):
        assert MASK in refused.value.message, refused.value.message
        assert secret not in str(refused.value) and secret not in refused.value.message
        assert secret not in repr(refused.value.args)


def test_a_transient_failure_is_tried_three_times_with_one_line_per_retry(systems, caplog):
    systems.moodle.state.set_faults(error_every=1, kinds=["http503"])  # every call answers 503
    caplog.set_level(logging.WARNING, logger="openvle.outside")

    with pytest.raises(moodle.MoodleTransientError, match="Moodle answered HTTP 503 to core_webservice_get_site_info"):
        systems.moodle_client.call("core_webservice_get_site_info")

    assert systems.moodle.state.error_plan.hits == 3
    assert retry_lines(caplog) == [
        "Moodle: core_webservice_get_site_info failed (attempt 1/3), trying again in 0.5 s: "
        "Moodle answered HTTP 503 to core_webservice_get_site_info",
        "Moodle: core_webservice_get_site_info failed (attempt 2/3), trying again in 1.0 s: "
        "Moodle answered HTTP 503 to core_webservice_get_site_info",
    ]


def test_a_permanent_failure_is_not_tried_again(systems, caplog):
    caplog.set_level(logging.WARNING, logger="openvle.outside")
    with pytest.raises(guacamole.GuacamolePermanentError):
        systems.guacamole.create_connection({"name": "x", "parentIdentifier": "ROOT", "protocol": "nope",
                                             "parameters": {}, "attributes": {}})
    assert retry_lines(caplog) == []


def test_a_lost_answer_to_a_clone_is_not_sent_again(systems, caplog):
    pve = systems.pve
    pve.state.set_faults(lost_clone_responses=[1])  # carried out, but the connection closes before the answer
    caplog.set_level(logging.WARNING, logger="openvle.outside")
    before = len(pve.state.snapshot()["vms"])

    with pytest.raises(proxmox.AnswerLost, match="Proxmox's answer was lost"):
        systems.proxmox.clone("pve1", 9000, 4242, name="lost-answer")

    assert retry_lines(caplog) == []
    assert len(pve.state.snapshot()["vms"]) == before + 1  # one clone, not three


def test_a_host_out_of_reach_is_transient_and_named(settings_env, caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = moodle.Moodle(settings_env(MOODLE_URL=f"http://127.0.0.1:{port}", MOODLE_TOKEN=MOODLE_TOKEN))
    caplog.set_level(logging.WARNING, logger="openvle.outside")

    with pytest.raises(moodle.MoodleTransientError, match="^cannot reach Moodle: ConnectError$"):
        client.call("core_webservice_get_site_info")
    assert [line.split(", trying")[0] for line in retry_lines(caplog)] == [
        "Moodle: core_webservice_get_site_info failed (attempt 1/3)",
        "Moodle: core_webservice_get_site_info failed (attempt 2/3)",
    ]


def test_proxmox_with_a_certificate_nobody_trusts_fails_at_once_naming_pve_verify_ssl(pve_server, settings_env,
                                                                                        caplog):
    # The simulator's certificate is self-signed; PVE_VERIFY_SSL=true trusts only the system's CAs.
    fresh_cluster(pve_server, settings_env, {"linked_clone": 0.2}, PVE_VERIFY_SSL="true")
    with caplog.at_level(logging.WARNING, logger="openvle.outside"), \
            pytest.raises(proxmox.ProxmoxPermanentError) as refused:
        proxmox.Proxmox().clone("pve1", 9001, 150, name="never")
    message = str(refused.value)
    assert f"the TLS certificate of Proxmox at https://127.0.0.1:{pve_server.port} is not trusted" in message
    assert "set PVE_VERIFY_SSL to the CA bundle that signed it" in message
    assert retry_lines(caplog) == []  # no try again: only the operator can fix it
    # refused at the handshake, so no clone was asked for (not an AnswerLost to look into)
    assert not any(task["type"] == "qmclone" for task in pve_server.state.snapshot()["tasks"])
