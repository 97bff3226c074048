"""A mail catcher: a real SMTP server (aiosmtpd) that keeps what it accepts and shows it over HTTP, with
recipients refused on demand (550 5.1.1), temporary failures (421 4.3.2), slow replies after DATA (the
message kept, its 250 held back), optional AUTH and TLS.

    from sandbox.mail import MailCatcher
    catcher = MailCatcher(auth=("openvle", "secret")).start()
    with smtplib.SMTP(catcher.smtp_host, catcher.smtp_port) as smtp:
        smtp.login("openvle", "secret")
        smtp.send_message(msg)
    catcher.state.messages()        # [{id, subject, text, html, ...}]; also GET {catcher.http_url}/messages
    catcher.stop()
"""

from .main import main
from .server import MailCatcher
from .state import MailState

__all__ = ["MailCatcher", "MailState", "main"]
