"""The outbox's SMTP sender: one mail per message, STARTTLS or SMTPS, never a password in clear."""
from __future__ import annotations

import email.utils
import hashlib
import json
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from .queue import DeliveryError, OutboxMessage


def send_smtp(app, message: OutboxMessage) -> None:
    """Send the message as a mail; raise on anything but the server's acceptance."""
    server, recipients = smtp_target(message.target, app.config.get("ALERT_SMTP_URL"))
    extra = json.loads(message.headers or "{}")
    mail = EmailMessage()
    mail["From"] = extra.pop("From", None) or server["user"] or "geekai@localhost"
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = extra.pop("Subject", None) or f"[geekai] {message.topic}"
    mail["Date"] = email.utils.formatdate(usegmt=True)
    # Message-ID from the key: mail systems that dedupe by it drop a re-sent copy.
    mail["Message-ID"] = f"<{hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]}@geekai>"
    mail["Idempotency-Key"] = message.idempotency_key
    for name, value in extra.items():
        mail[name] = value
    mail.set_content(message.payload)
    timeout = app.config["OUTBOX_TIMEOUT_SECONDS"]
    cls = smtplib.SMTP_SSL if server["ssl"] else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if server["ssl"] else {}
    with cls(server["host"], server["port"], timeout=timeout, **kwargs) as smtp:
        smtp.ehlo()
        if not server["ssl"] and smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        elif not server["ssl"] and server["user"]:
            raise DeliveryError(f"the SMTP server {server['host']}:{server['port']} does not offer STARTTLS:"
                                " not sending the password in clear (use smtps://, or a server with STARTTLS)")
        if server["user"]:
            smtp.login(server["user"], server["password"])
        smtp.send_message(mail, to_addrs=recipients)


def smtp_target(target: str, default_url: str | None = None) -> tuple[dict, list[str]]:
    """Parse "smtp[s]://user:pass@host:port?to=a@x,b@y", or "mailto:a@x,b@y" with ALERT_SMTP_URL."""
    if target.startswith("mailto:"):
        if not default_url:
            raise DeliveryError("mailto target but ALERT_SMTP_URL is not set")
        url, recipients = default_url, unquote(target[len("mailto:"):]).split(",")
    else:
        url = target
        recipients = ",".join(parse_qs(urlsplit(target).query).get("to", [])).split(",")
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise DeliveryError("SMTP target must look like smtp://user:pass@host:port or smtps://...")
    recipients = [r.strip() for r in recipients if r.strip()]
    if not recipients:
        raise DeliveryError("SMTP target names no recipient")
    secure = parts.scheme == "smtps"
    server = {"host": parts.hostname, "port": parts.port or (465 if secure else 25), "ssl": secure,
              "user": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    return server, recipients
