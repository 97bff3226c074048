"""The mail catcher, exercised through the real smtplib client over SMTP and urllib over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from conftest import WAIT_SCALE
from sandbox.clock import Clock, FakeClock
from sandbox.mail import MailCatcher, MailState

USER, PASSWORD = "openvle", "s3cret pass:word"  # smtplib sends ASCII credentials only
SENDER = "noreply@openvle.test"
LOCAL = "tests.openvle.test"  # smtplib's EHLO name: skips a getfqdn() lookup per connection


@pytest.fixture(scope="module")
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(catcher: MailCatcher) -> MailState:
    catcher.state.reset()
    catcher.state.clock = Clock()
    return catcher.state


def make_message(to: str = "student@example.org", subject: str = "Your lab is ready", cc: str | None = None,
                 html: bool = True, attachment: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = f"OpenVLE <{SENDER}>"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Date"] = format_datetime(dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC))
    msg["Message-ID"] = make_msgid(domain="openvle.test")
    msg.set_content("Hello Jürgen,\nyour VM is running.\n")
    if html:
        msg.add_alternative("<p>Hello Jürgen,<br>your VM is <b>running</b>.</p>\n", subtype="html")
    if attachment:
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="guide.pdf")
    return msg


def send(catcher: MailCatcher, msg: EmailMessage, login: tuple[str, str] | None = None,
         to_addrs: list[str] | None = None) -> dict:
    with smtplib.SMTP(catcher.smtp_host, catcher.smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
        if login:
            smtp.login(*login)
        return smtp.send_message(msg, to_addrs=to_addrs)


def http(catcher: MailCatcher, path: str, method: str = "GET", body: object = None) -> tuple[int, str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(catcher.http_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def http_json(catcher: MailCatcher, path: str, method: str = "GET", body: object = None) -> tuple[int, object]:
    status, ctype, raw = http(catcher, path, method, body)
    assert ctype == "application/json"
    return status, json.loads(raw)


# ---- catching ----------------------------------------------------------------------------------------------------
def test_plain_message_is_caught_and_parsed(catcher: MailCatcher, fresh: MailState):
    msg = make_message(to="Jürgen Groß <student@example.org>", subject="Grüße: Ihr Labor ist bereit ✓",
                       cc="tutor@example.org", attachment=True)
    assert send(catcher, msg) == {}

    [caught] = fresh.messages()
    assert caught["mail_from"] == SENDER
    assert caught["rcpt_tos"] == ["student@example.org", "tutor@example.org"]
    assert caught["subject"] == "Grüße: Ihr Labor ist bereit ✓"
    assert caught["from"] == f"OpenVLE <{SENDER}>"
    assert caught["to"] == ["student@example.org"]
    assert caught["cc"] == ["tutor@example.org"]
    assert caught["date"] == "2025-06-15T12:00:00+00:00"
    assert caught["message_id"] == msg["Message-ID"]
    assert caught["text"] == "Hello Jürgen,\nyour VM is running.\n"
    assert caught["html"] == "<p>Hello Jürgen,<br>your VM is <b>running</b>.</p>\n"
    assert caught["attachments"] == 1
    assert caught["headers"]["To"] == "Jürgen Groß <student@example.org>"
    assert caught["headers"]["Content-Type"].startswith("multipart/mixed")
    assert "guide.pdf" in caught["raw"] and caught["raw"].startswith("Subject: ")
    assert caught["auth_user"] is None and caught["tls"] is False
    assert isinstance(caught["id"], int) and caught["received_at"].endswith("+00:00")
    assert set(caught) >= {"id", "mail_from", "rcpt_tos", "subject", "from", "to", "date", "text", "html",
                           "headers", "received_at", "raw"}


def test_text_only_message_and_order(catcher: MailCatcher, fresh: MailState):
    send(catcher, make_message(subject="first", html=False))
    send(catcher, make_message(subject="second"))
    first, second = fresh.messages()
    assert (first["subject"], second["subject"]) == ("first", "second")
    assert first["html"] is None and first["text"].startswith("Hello")
    assert second["id"] > first["id"]
    assert fresh.snapshot()["stats"]["accepted"] == 2


def test_no_auth_offered_when_not_configured(catcher: MailCatcher):
    with smtplib.SMTP(catcher.smtp_host, catcher.smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth") and not smtp.has_extn("starttls")
        assert smtp.docmd("AUTH", "PLAIN")[0] == 503


def test_wait_for_messages(catcher: MailCatcher, fresh: MailState):
    with pytest.raises(TimeoutError):
        fresh.wait_for_messages(1, timeout=0.05)
    send(catcher, make_message(to="a@example.org"))
    assert len(fresh.wait_for_messages(1, timeout=1, to="A@example.org")) == 1


# ---- refusals ----------------------------------------------------------------------------------------------------
def test_rejected_recipient_gets_550_and_nothing_is_stored(catcher: MailCatcher, fresh: MailState):
    fresh.reject(["Gone@Example.org"])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(catcher, make_message(to="gone@example.ORG"))
    code, text = info.value.recipients["gone@example.ORG"]
    assert code == 550
    assert text == b"5.1.1 <gone@example.ORG>: Recipient address rejected: User unknown"
    assert fresh.messages() == []
    assert fresh.snapshot()["stats"]["rejected_recipients"] == 1


def test_partly_rejected_message_goes_to_the_others(catcher: MailCatcher, fresh: MailState):
    fresh.reject(["gone@example.org"])
    refused = send(catcher, make_message(to="gone@example.org", cc="here@example.org"))
    assert refused == {"gone@example.org": (550, b"5.1.1 <gone@example.org>: Recipient address rejected: "
                                                 b"User unknown")}
    [caught] = fresh.messages()
    assert caught["rcpt_tos"] == ["here@example.org"]


def test_temporary_failure_by_count(catcher: MailCatcher, fresh: MailState):
    fresh.set_temporary_failure(count=2)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            send(catcher, make_message())
        assert info.value.smtp_code == 421
        assert info.value.smtp_error == b"4.3.2 Service not available, try again later"
    assert fresh.messages() == []
    send(catcher, make_message(subject="third time lucky"))
    assert [m["subject"] for m in fresh.messages()] == ["third time lucky"]
    assert fresh.snapshot()["stats"]["temporary_failures"] == 2
    assert fresh.snapshot()["temporary_failure"]["active"] is False


def test_temporary_failure_closes_the_connection(catcher: MailCatcher, fresh: MailState):
    fresh.set_temporary_failure(count=1)
    smtp = smtplib.SMTP(catcher.smtp_host, catcher.smtp_port, local_hostname=LOCAL, timeout=5)
    try:
        smtp.ehlo()
        assert smtp.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()  # RFC 5321: after 421 the server closes the channel
    finally:
        smtp.close()


def test_temporary_failure_for_seconds(catcher: MailCatcher, fresh: MailState):
    fresh.clock = clock = FakeClock()  # the window moves when the test says, however slow the machine
    fresh.set_temporary_failure(seconds=0.4)
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        send(catcher, make_message())
    assert info.value.smtp_code == 421
    clock.advance(0.39)
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(catcher, make_message())
    clock.advance(0.02)
    send(catcher, make_message(subject="after the window"))
    assert [m["subject"] for m in fresh.messages()] == ["after the window"]


def test_temporary_failure_arguments(fresh: MailState):
    with pytest.raises(ValueError):
        fresh.set_temporary_failure()
    with pytest.raises(ValueError):
        fresh.set_temporary_failure(count=-1)
    fresh.set_temporary_failure(count=3)
    assert fresh.set_temporary_failure(count=0)["active"] is False


def test_slow_reply_keeps_the_message_a_sender_gave_up_on(catcher: MailCatcher, fresh: MailState):
    """The window in which a sender cannot know: the relay has the message, its 250 never arrives."""
    fresh.set_slow_reply(seconds=60, count=1)
    msg = make_message(subject="kept, never confirmed")
    smtp = smtplib.SMTP(catcher.smtp_host, catcher.smtp_port, local_hostname=LOCAL, timeout=30)
    outcome: list[BaseException | None] = []

    def sender() -> None:
        try:
            smtp.send_message(msg)
            outcome.append(None)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            outcome.append(exc)

    smtp.ehlo()
    sending = threading.Thread(target=sender)
    sending.start()
    try:
        fresh.wait_holding(timeout=30)  # the relay has the message and holds its 250 back
    finally:
        smtp.sock.shutdown(socket.SHUT_RDWR)  # the sender gives up now: it never gets the 250
        sending.join(timeout=30)
        smtp.close()
    assert len(outcome) == 1 and outcome[0] is not None  # the sender could not know it was taken
    assert [m["message_id"] for m in fresh.messages()] == [msg["Message-ID"]]
    send(catcher, make_message(subject="answered at once"))  # count=1: the next one is not held
    assert [m["subject"] for m in fresh.messages()] == ["kept, never confirmed", "answered at once"]
    assert fresh.snapshot()["stats"]["slow_replies"] == 1


# ---- AUTH and TLS ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_catcher() -> Iterator[MailCatcher]:
    with MailCatcher(auth=(USER, PASSWORD)) as running:
        yield running


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_success(auth_catcher: MailCatcher, mechanism: str):
    auth_catcher.state.reset()
    with smtplib.SMTP(auth_catcher.smtp_host, auth_catcher.smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        smtp.user, smtp.password = USER, PASSWORD
        code, _ = smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        assert code == 235
        smtp.send_message(make_message())
    [caught] = auth_catcher.state.messages()
    assert caught["auth_user"] == USER


def test_auth_failure_is_535(auth_catcher: MailCatcher):
    auth_catcher.state.reset()
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        send(auth_catcher, make_message(), login=(USER, "wrong"))
    assert info.value.smtp_code == 535
    assert auth_catcher.state.snapshot()["stats"]["auth_failures"] >= 1
    assert auth_catcher.state.messages() == []


def test_auth_is_required_when_configured(auth_catcher: MailCatcher):
    auth_catcher.state.reset()
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        send(auth_catcher, make_message())
    assert info.value.smtp_code == 530
    assert auth_catcher.state.messages() == []


def test_starttls_with_the_ca(tmp_path):
    with MailCatcher(auth=(USER, PASSWORD), tls="starttls", cert_dir=tmp_path) as tls_catcher:
        assert tls_catcher.ca_path == str(tmp_path / "cert.pem")
        context = ssl.create_default_context(cafile=tls_catcher.ca_path)
        with smtplib.SMTP(tls_catcher.smtp_host, tls_catcher.smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            smtp.starttls(context=context)
            smtp.login(USER, PASSWORD)
            smtp.send_message(make_message(subject="over TLS"))
        [caught] = tls_catcher.state.messages()
        assert caught["subject"] == "over TLS" and caught["tls"] is True

        with smtplib.SMTP(tls_catcher.smtp_host, tls_catcher.smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
            with pytest.raises(ssl.SSLCertVerificationError):
                smtp.starttls(context=ssl.create_default_context())  # the system's CAs do not know it


def test_implicit_tls():
    with MailCatcher(tls="ssl") as tls_catcher:
        context = ssl.create_default_context(cafile=tls_catcher.ca_path)
        with smtplib.SMTP_SSL(tls_catcher.smtp_host, tls_catcher.smtp_port, local_hostname=LOCAL, timeout=5,
                              context=context) as smtp:
            smtp.send_message(make_message(subject="SMTPS"))
        [caught] = tls_catcher.state.messages()
        assert caught["subject"] == "SMTPS" and caught["tls"] is True
        ca_path = tls_catcher.ca_path
    assert not os.path.exists(ca_path)  # the temporary certificate goes with the catcher


# ---- HTTP --------------------------------------------------------------------------------------------------------
def test_http_json_views_and_filter(catcher: MailCatcher):
    send(catcher, make_message(to="alice@example.org", subject="for Alice"))
    send(catcher, make_message(to="bob@example.org", subject="for Bob", html=False))

    status, listed = http_json(catcher, "/messages")
    assert status == 200 and [m["subject"] for m in listed] == ["for Alice", "for Bob"]
    status, only_bob = http_json(catcher, "/messages?to=Bob%40example.org")
    assert [m["subject"] for m in only_bob] == ["for Bob"]
    assert http_json(catcher, "/messages?to=nobody%40example.org") == (200, [])

    alice_id, bob_id = listed[0]["id"], listed[1]["id"]
    status, one = http_json(catcher, f"/messages/{alice_id}")
    assert status == 200 and one == listed[0]

    status, ctype, body = http(catcher, f"/messages/{alice_id}.html")
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert body.decode() == "<p>Hello Jürgen,<br>your VM is <b>running</b>.</p>\n"
    status, ctype, body = http(catcher, f"/messages/{bob_id}.html")  # text only: shown in <pre>
    assert status == 200 and "<pre>Hello Jürgen," in body.decode()
    status, ctype, body = http(catcher, f"/messages/{alice_id}.txt")
    assert (status, ctype, body.decode()) == (200, "text/plain; charset=utf-8", "Hello Jürgen,\nyour VM is running.\n")
    status, ctype, body = http(catcher, f"/messages/{alice_id}.eml")
    assert status == 200 and ctype == "message/rfc822" and b"Subject: for Alice" in body

    assert http_json(catcher, "/messages/999999")[0] == 404
    assert http_json(catcher, "/nowhere")[0] == 404


def test_http_inbox_page(catcher: MailCatcher):
    assert b"No messages caught yet" in http(catcher, "/")[2]
    send(catcher, make_message(to="alice@example.org", subject="<Lab> & more ✓"))
    [message] = catcher.state.messages()
    status, ctype, body = http(catcher, "/")
    page = body.decode()
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert "&lt;Lab&gt; &amp; more ✓" in page and "alice@example.org" in page
    assert message["received_at"][:10] in page
    for view in (".html", ".txt", ".eml", ""):
        assert f'href="/messages/{message["id"]}{view}"' in page


def test_http_clear_and_delete(catcher: MailCatcher, fresh: MailState):
    send(catcher, make_message(subject="one"))
    send(catcher, make_message(subject="two"))
    one, two = fresh.messages()
    assert http_json(catcher, f"/messages/{one['id']}", method="DELETE") == (200, {"deleted": one["id"]})
    assert [m["id"] for m in fresh.messages()] == [two["id"]]
    assert http_json(catcher, "/messages", method="DELETE") == (200, {"deleted": 1})
    assert http_json(catcher, "/messages") == (200, [])
    send(catcher, make_message(subject="three"))
    assert fresh.messages()[0]["id"] > two["id"]  # ids are never reused


def test_admin_endpoints(catcher: MailCatcher, fresh: MailState):
    status, state = http_json(catcher, "/_sandbox/state")
    assert status == 200 and state == {"messages": 0, "rejected": [], "stats": state["stats"],
                                       "temporary_failure": {"active": False, "count": 0, "seconds_left": None},
                                       "slow_reply": {"seconds": 0.0, "count": 0, "holding": 0}}

    assert http_json(catcher, "/_sandbox/reject", "POST", {"addresses": ["Gone@example.org"]}) == \
        (200, {"rejected": ["gone@example.org"]})
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(catcher, make_message(to="gone@example.org"))

    status, reply = http_json(catcher, "/_sandbox/temporary-failure", "POST", {"count": 1})
    assert status == 200 and reply["temporary_failure"]["count"] == 1
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(catcher, make_message(to="here@example.org"))
    status, reply = http_json(catcher, "/_sandbox/temporary-failure", "POST", {"seconds": 30})
    assert reply["temporary_failure"]["active"] is True and 29 < reply["temporary_failure"]["seconds_left"] <= 30
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(catcher, make_message(to="here@example.org"))

    send_ok = http_json(catcher, "/_sandbox/state")[1]
    assert send_ok["rejected"] == ["gone@example.org"] and send_ok["temporary_failure"]["active"] is True
    assert send_ok["stats"]["rejected_recipients"] == 1 and send_ok["stats"]["temporary_failures"] == 2

    status, state = http_json(catcher, "/_sandbox/reset", "POST")
    assert status == 200 and state["rejected"] == [] and state["temporary_failure"]["active"] is False
    send(catcher, make_message(to="gone@example.org"))
    assert http_json(catcher, "/_sandbox/state")[1]["messages"] == 1

    assert http_json(catcher, "/_sandbox/reject", "POST", {"addresses": "x@example.org"})[0] == 400
    assert http_json(catcher, "/_sandbox/reject", "POST", {})[0] == 400
    assert http_json(catcher, "/_sandbox/temporary-failure", "POST", {})[0] == 400
    assert http_json(catcher, "/_sandbox/temporary-failure", "POST", {"count": "2"})[0] == 400
    assert http_json(catcher, "/_sandbox/slow-reply", "POST", {"seconds": -1})[0] == 400
    assert http_json(catcher, "/_sandbox/slow-reply", "POST", {"seconds": 5, "count": 2}) == \
        (200, {"slow_reply": {"seconds": 5.0, "count": 2, "holding": 0}})
    assert http_json(catcher, "/_sandbox/temporary-failure", "POST", {"minutes": 2})[0] == 400
    assert http_json(catcher, "/_sandbox/nothing", "POST")[0] == 404


# ---- lifecycle ---------------------------------------------------------------------------------------------------
def test_stop_frees_both_ports():
    running = MailCatcher().start()
    smtp_port, http_port = running.smtp_port, running.http_port
    assert smtp_port and http_port and running.http_url == f"http://127.0.0.1:{http_port}"
    send(running, make_message())
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", smtp_port, local_hostname=LOCAL, timeout=2)
    again = MailCatcher(smtp_port=smtp_port, http_port=http_port).start()  # the same ports bind again
    try:
        assert (again.smtp_port, again.http_port) == (smtp_port, http_port)
    finally:
        again.stop()


def test_command_line():
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.mail", "--smtp-port", "0", "--http-port", "0",
                             "--reject", "gone@example.org"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("Mail sandbox: SMTP on 127.0.0.1:"), first + proc.stderr.read()
        smtp_port = int(first.split(":")[2].split()[0])
        inbox = proc.stdout.readline().split()[-1]
        assert inbox.startswith("http://127.0.0.1:")
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname=LOCAL, timeout=5) as smtp:
            smtp.send_message(make_message(subject="via the CLI"))
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.send_message(make_message(to="gone@example.org"))
        with urllib.request.urlopen(inbox + "messages", timeout=5) as response:
            assert [m["subject"] for m in json.load(response)] == ["via the CLI"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10 * WAIT_SCALE) == 0
        proc.stdout.close()
        proc.stderr.close()
