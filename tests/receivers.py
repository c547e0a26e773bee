"""Test receivers for the outbox: a webhook endpoint (http.server) and a tiny SMTP server (sockets)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Records every POST; `mode` makes it answer 200 ("ok"), 500 ("error"), hang, or refuse
    connections (down); "trickle_headers" / "trickle_body" send a 200 answer a byte every
    `trickle_every` seconds for `hang_seconds` (each byte well within any read timeout)."""

    def __init__(self, secret: str | None = None):
        self.secret = secret
        self.requests: list[dict] = []
        self.mode = "ok"
        self.hang_seconds = 5.0
        self.trickle_every = 0.2
        self._lock = threading.Lock()
        self._server = None
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.mode == "hang":
                    time.sleep(receiver.hang_seconds)
                    return
                if receiver.mode.startswith("trickle"):
                    with receiver._lock:
                        receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                                  "body": body, "path": self.path, "accepted": False})
                    self._trickle(receiver.mode == "trickle_headers")
                    return
                entry = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                         "path": self.path, "accepted": receiver.mode == "ok"}
                with receiver._lock:
                    receiver.requests.append(entry)
                status = 200 if receiver.mode == "ok" else 500
                # Answered as chat robots do (WeCom/DingTalk errcode, Feishu code): robot channels accept it.
                answer = b'{"errcode":0,"code":0,"errmsg":"ok"}' if status == 200 else b'{"errcode":-1,"errmsg":"down"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _trickle(self, in_headers: bool):
                answer = b'{"errcode":0,"code":0}'
                pad = b"a" if in_headers else b" "
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                count = int(receiver.hang_seconds / receiver.trickle_every)
                if in_headers:
                    start, end = head + b"X-Slow: ", b"\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
                else:
                    start = head + b"Content-Length: %d\r\n\r\n{" % (len(answer) + count)
                    end = answer[1:]
                try:
                    self.wfile.write(start)
                    for _ in range(count):
                        time.sleep(receiver.trickle_every)
                        self.wfile.write(pad)
                    self.wfile.write(end)
                except OSError:  # the sender gave up and closed the connection
                    pass
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go down: connections are refused until start() again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["accepted"]]

    def events_by_key(self) -> dict[str, list[dict]]:
        """Accepted requests grouped by Idempotency-Key."""
        grouped: dict[str, list[dict]] = {}
        for r in self.accepted():
            grouped.setdefault(r["headers"]["idempotency-key"], []).append(r)
        return grouped

    def verify(self, request: dict, max_age: int = 300) -> bool:
        """The receiving side's check, as docs/payments.md describes it."""
        timestamp = request["headers"].get("x-geekai-timestamp", "")
        given = request["headers"].get("x-geekai-signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age:
            return False
        expected = "sha256=" + hmac.new(self.secret.encode(), timestamp.encode() + b"." + request["body"],
                                        hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, given)

    @staticmethod
    def json(request: dict) -> dict:
        return json.loads(request["body"])


# A self-signed certificate for 127.0.0.1 (valid until 2126), for the fake SMTP server's STARTTLS
# only: test material, it protects nothing.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgIUR4+Tb3H14IC1tfnNDlvBTYjfGK4wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQZ2Vla2FpIHRlc3QgU01UUDAgFw0yNjExMjgxOTQ3MjJaGA8y
MTI2MTEwNDE5NDcyMlowGzEZMBcGA1UEAwwQZ2Vla2FpIHRlc3QgU01UUDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABHLUKs1kfGcUSWPEm4haJkBIX6kOUP1ygxSR
894OJWmRqDw2SqAHmroJnSWBn04ztAV5/ygggS4UikEmgSJC0xqjbzBtMB0GA1Ud
DgQWBBQkgY7iI65aoeI04WhS786pgPRPSjAfBgNVHSMEGDAWgBQkgY7iI65aoeI0
4WhS786pgPRPSjAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAtWdh7boCydfMtvkkWcpq0rj0Y70m
UXT4dahEm5s3oVcCIQDHrAL4OOVHAotD9rB/WS4QgUMfKaH+2HnsGo7azF9pDQ==
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2yi9u3pA8e4AXd31
bncMdbTDQATN2us4UY2kBBX0DymhRANCAARy1CrNZHxnFEljxJuIWiZASF+pDlD9
coMUkfPeDiVpkag8NkqgB5q6CZ0lgZ9OM7QFef8oIIEuFIpBJoEiQtMa
-----END PRIVATE KEY-----
"""


class FakeSMTPServer:
    """Just enough SMTP (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive mail in a test.

    With `starttls` (the default) it offers STARTTLS with TEST_CERT and AUTH only after it, as
    real submission servers do; while it runs, OpenSSL's default CA file (SSL_CERT_FILE) is that
    certificate, so the sender's ordinary verifying context trusts it. Without, it offers AUTH in
    clear. `logins` lists every user that logged in, `clear_logins` those that did so without TLS.
    """

    def __init__(self, starttls: bool = True):
        self.starttls = starttls
        self.messages: list[dict] = []
        self.logins: list[str] = []
        self.clear_logins: list[str] = []
        self._server = None
        self._files = tempfile.TemporaryDirectory()
        self._cert = os.path.join(self._files.name, "cert.pem")
        self._key = os.path.join(self._files.name, "key.pem")
        self._saved_cert_file = None

    def start(self) -> "FakeSMTPServer":
        smtp = self
        with open(self._cert, "w") as f:
            f.write(TEST_CERT)
        with open(self._key, "w") as f:
            f.write(TEST_KEY)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert, self._key)
        if self.starttls:
            self._saved_cert_file = os.environ.get("SSL_CERT_FILE")
            os.environ["SSL_CERT_FILE"] = self._cert

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                send = lambda line: (self.wfile.write(line.encode() + b"\r\n"), self.wfile.flush())  # noqa: E731
                send("220 fake ESMTP")
                mail = {"from": None, "to": [], "data": b""}
                secure = False
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    command = line.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        send("250-fake")
                        if smtp.starttls and not secure:
                            send("250 STARTTLS")
                        else:
                            send("250 AUTH PLAIN")
                    elif verb == "STARTTLS" and smtp.starttls and not secure:
                        send("220 go ahead")
                        self.tls = context.wrap_socket(self.connection, server_side=True)
                        self.rfile, self.wfile = self.tls.makefile("rb"), self.tls.makefile("wb")
                        secure = True
                    elif verb == "AUTH":
                        user = base64.b64decode(command.split(" ")[2]).split(b"\0")[1].decode()
                        smtp.logins.append(user)
                        if not secure:
                            smtp.clear_logins.append(user)
                        send("235 ok")
                    elif verb == "MAIL":
                        mail["from"] = command.split(":", 1)[1].strip("<> ")
                        send("250 ok")
                    elif verb == "RCPT":
                        mail["to"].append(command.split(":", 1)[1].strip("<> "))
                        send("250 ok")
                    elif verb == "DATA":
                        send("354 go on")
                        chunks = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            chunks.append(chunk)
                        mail["data"] = b"".join(chunks)
                        smtp.messages.append(dict(mail, tls=secure))
                        mail = {"from": None, "to": [], "data": b""}
                        send("250 queued")
                    elif verb == "QUIT":
                        send("221 bye")
                        return
                    else:
                        send("250 ok")

            def finish(self):
                try:
                    super().finish()
                finally:
                    if getattr(self, "tls", None) is not None:
                        self.tls.close()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.starttls:
            if self._saved_cert_file is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = self._saved_cert_file
        self._files.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
