"""Command line: run the mail catcher until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys

from ..serve import serve
from .server import MailCatcher


def _credentials(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.mail", description="SMTP mail catcher with a web view")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--auth", type=_credentials, default=None, metavar="USER:PASSWORD",
                        help="require AUTH PLAIN/LOGIN with these credentials (allowed without TLS)")
    parser.add_argument("--tls", choices=("starttls", "ssl"), default=None,
                        help="offer STARTTLS, or speak implicit TLS (SMTPS), with a self-signed certificate")
    parser.add_argument("--cert-dir", default=None, help="where cert.pem/key.pem go (default: a temp dir)")
    parser.add_argument("--reject", action="append", default=[], metavar="ADDRESS",
                        help="answer RCPT TO this address with 550 5.1.1 (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every SMTP command")
    args = parser.parse_args(argv)

    if not args.verbose:
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command log
    catcher = MailCatcher(host=args.host, smtp_port=args.smtp_port, http_port=args.http_port, auth=args.auth,
                          tls=args.tls, cert_dir=args.cert_dir)
    if args.reject:
        catcher.state.reject(args.reject)
    return serve(catcher, lambda: [
        f"Mail sandbox: SMTP on {catcher.smtp_host}:{catcher.smtp_port}"
        + (f" ({catcher.tls})" if catcher.tls else "")
        + (f", AUTH as {catcher.auth[0]}" if catcher.auth else ""),
        f"  inbox:      {catcher.http_url}/",
        f"  JSON:       {catcher.http_url}/messages",
        *([f"  CA bundle:  {catcher.ca_path}"] if catcher.ca_path else []),
    ])


if __name__ == "__main__":
    sys.exit(main())
