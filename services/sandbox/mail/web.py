"""The HTTP side: caught messages as JSON and as a small HTML inbox, plus the /_sandbox admin endpoints.

    GET    /                      the inbox (HTML): subject, recipients, time, links to each view
    GET    /messages[?to=addr]    JSON list, newest last; `to` matches envelope, To and Cc recipients
    GET    /messages/<id>         JSON
    GET    /messages/<id>.html    the message's HTML body (its text in <pre> when it has none)
    GET    /messages/<id>.txt     the message's text body
    GET    /messages/<id>.eml     the message as received
    DELETE /messages[/<id>]       forget all caught messages (or one)
    GET    /_sandbox/state, POST /_sandbox/{reset,reject,temporary-failure}   see admin.py
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..http import SimulatorHandler, SimulatorServer
from . import admin
from .state import MailState

MAX_BODY = 1024 * 1024
MESSAGE_PATH = re.compile(r"^/messages/(\d+)(?:\.(html|txt|eml))?$")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


class _Handler(SimulatorHandler):
    server: _Server
    server_version = "OpenVLE-mail-sandbox/1.0"
    timeout = 30  # an idle connection does not hold a thread forever
    methods = ("GET", "POST", "DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path).rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"error": "body too large"})
            return
        raw = self.rfile.read(length) if length else b""
        state = self.server.state
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                self._json(400, {"error": "the body is not JSON"})
                return
            self._json(*admin.handle(state, method, path, body))
        elif path == "/" and method == "GET":
            self._send(200, "text/html; charset=utf-8", render_inbox(state).encode())
        elif path == "/messages" and method == "GET":
            to = parse_qs(url.query).get("to", [None])[0]
            self._json(200, state.messages(to=to))
        elif path == "/messages" and method == "DELETE":
            self._json(200, {"deleted": state.clear()})
        elif match := MESSAGE_PATH.match(path):
            self._message(method, int(match.group(1)), match.group(2))
        else:
            self._json(404, {"error": f"no such resource: {method} {path}"})

    def _message(self, method: str, message_id: int, view: str | None) -> None:
        state = self.server.state
        if method == "DELETE" and view is None:
            if state.delete(message_id):
                self._json(200, {"deleted": message_id})
            else:
                self._json(404, {"error": f"no message {message_id}"})
            return
        if method != "GET":
            self._json(405, {"error": f"{method} not allowed here"})
            return
        message = state.message(message_id)
        if message is None:
            self._json(404, {"error": f"no message {message_id}"})
        elif view is None:
            self._json(200, message)
        elif view == "html":
            body = message["html"]
            if body is None:
                body = f"<!doctype html><meta charset=utf-8><pre>{html.escape(message['text'] or '')}</pre>"
            # the message's own markup, from this origin: no scripts, no forms
            self._send(200, "text/html; charset=utf-8", body.encode(), {"Content-Security-Policy": "sandbox"})
        elif view == "txt":
            self._send(200, "text/plain; charset=utf-8", (message["text"] or "").encode())
        else:
            self._send(200, "message/rfc822", message["raw"].encode(),
                       {"Content-Disposition": f'inline; filename="message-{message_id}.eml"'})

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status, REASONS.get(status))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(SimulatorServer):
    def __init__(self, address: tuple[str, int], state: MailState):
        super().__init__(address, _Handler)
        self.state = state


def make_server(host: str, port: int, state: MailState) -> SimulatorServer:
    return _Server((host, port), state)


def _when(iso: str) -> str:
    return iso[:19].replace("T", " ") + " UTC"


def render_inbox(state: MailState) -> str:
    snapshot = state.snapshot()
    rows = []
    for m in reversed(state.messages()):  # newest first, as mail clients show them
        i = m["id"]
        links = " · ".join(f'<a href="/messages/{i}{ext}">{label}</a>' for ext, label in
                           ((".html", "HTML"), (".txt", "text"), (".eml", "raw"), ("", "JSON")))
        attachments = f" <small>(+{m['attachments']} attachment(s))</small>" if m["attachments"] else ""
        rows.append(
            f"<tr><td>{i}</td><td>{html.escape(_when(m['received_at']))}</td>"
            f"<td>{html.escape(m['from'] or m['mail_from'])}</td>"
            f"<td>{html.escape(', '.join(m['rcpt_tos']))}</td>"
            f"<td><a href=\"/messages/{i}.html\">{html.escape(m['subject'] or '(no subject)')}</a>{attachments}</td>"
            f"<td>{links}</td></tr>")
    faults = []
    if snapshot["rejected"]:
        faults.append("rejecting " + html.escape(", ".join(snapshot["rejected"])))
    failure = snapshot["temporary_failure"]
    if failure["active"]:
        faults.append(f"answering 421 (count {failure['count']}, seconds left {failure['seconds_left']})")
    table = ("<table><tr><th>#</th><th>Received</th><th>From</th><th>To</th><th>Subject</th><th>Views</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>No messages caught yet.</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>OpenVLE mail sandbox ({len(rows)})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ background: #f4f4f4; }}
.faults {{ color: #a40; }}
</style></head>
<body><h1>OpenVLE mail sandbox</h1>
<p>{len(rows)} message(s) caught, newest first. JSON: <a href="/messages">/messages</a>,
state: <a href="/_sandbox/state">/_sandbox/state</a>.</p>
{'<p class="faults">' + '; '.join(faults) + '</p>' if faults else ''}
{table}
</body></html>
"""
