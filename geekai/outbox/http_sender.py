"""The outbox's HTTP sender: signed JSON POSTs, with the whole exchange bounded in time.

Chat robots (WeCom, DingTalk, Feishu) answer HTTP 200 even when they refuse a message: the module
that owns such a channel registers how to read its verdict (`register_answer_check`; geekai/alerts
does for its robots), and an answer that says no is a failed delivery.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import functools
import threading
import time
from collections.abc import Callable

from .queue import DeliveryError, OutboxMessage

SIGNATURE_HEADER = "X-Geekai-Signature"
TIMESTAMP_HEADER = "X-Geekai-Timestamp"
# Of a receiver's answer, only this much is read (a robot's verdict is a few dozen bytes).
MAX_ANSWER_BYTES = 64 * 1024
# topic -> check(topic, answer text) that raises DeliveryError when the receiver refused.
_ANSWER_CHECKS: dict[str, Callable[[str, str], None]] = {}


def register_answer_check(topic: str, check: Callable[[str, str], None]) -> None:
    """Read the answers to messages of `topic` with `check` (it raises DeliveryError on a refusal)."""
    _ANSWER_CHECKS[topic] = check


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256 of b"<timestamp>." + body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def send_http(app, message: OutboxMessage) -> None:
    """POST the message; raise DeliveryError (or the network's error) on anything but a success."""
    body = message.payload.encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "geekai-outbox"}
    headers.update(json.loads(message.headers or "{}"))
    headers["Idempotency-Key"] = message.idempotency_key
    headers["X-Geekai-Event"] = message.topic
    if message.sign_with:
        secret = app.config.get(message.sign_with)
        if not secret:
            raise DeliveryError(f"{message.sign_with} is not set: cannot sign")
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    timeout = app.config["OUTBOX_TIMEOUT_SECONDS"]
    # requests' read timeout is per read: a receiver trickling a byte now and then would hold the
    # send (and the claim, past its lease) for ever. The watchdog bounds the whole exchange.
    import requests

    adapter = _watched_adapter_class()()
    with _Watchdog(timeout, adapter.connections) as watchdog, requests.Session() as session:
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            with session.post(message.target, data=body, headers=headers, timeout=(min(timeout, 5), timeout),
                              allow_redirects=False, stream=True) as response:
                status = response.status_code
                answer = _read_capped(response)
        except Exception:
            if watchdog.fired:
                raise DeliveryError(f"Timeout: no complete answer within {timeout:g} s") from None
            raise
        # A cut in the middle of the headers can parse as a short, complete answer: not a success.
        if watchdog.fired:
            raise DeliveryError(f"Timeout: no complete answer within {timeout:g} s")
    text = answer.decode(response.encoding or "utf-8", errors="replace")
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}: {text[:200]}")
    check = _ANSWER_CHECKS.get(message.topic)
    if check is not None:
        check(message.topic, text)


def _read_capped(response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


@functools.cache
def _watched_adapter_class():
    """requests loads with the first send, not on the way to the web server's first answer."""
    from requests.adapters import HTTPAdapter

    class _WatchedAdapter(HTTPAdapter):
        """An adapter that remembers the connections it hands out, for the watchdog to cut."""

        def __init__(self):
            super().__init__(max_retries=0)
            self.connections: list = []

        def get_connection_with_tls_context(self, *args, **kwargs):
            pool = super().get_connection_with_tls_context(*args, **kwargs)
            if not getattr(pool, "_geekai_watched", False):
                get_conn = pool._get_conn

                def watched_get_conn(*a, **kw):
                    conn = get_conn(*a, **kw)
                    self.connections.append(conn)
                    return conn

                pool._get_conn, pool._geekai_watched = watched_get_conn, True
            return pool

    return _WatchedAdapter


class _Watchdog:
    """After `seconds`, shuts down the sockets of `connections` (objects with a .sock) until stopped.

    A shut-down socket makes a read blocked in another thread return at once, so the sender
    fails with a timeout instead of waiting for a trickling peer. It keeps cutting until the
    send ends, which also catches a connection opened just after the deadline.
    """

    def __init__(self, seconds: float, connections: list):
        self.seconds, self.connections, self.fired = seconds, connections, False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-watchdog", daemon=True)

    def __enter__(self) -> "_Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired = True
        while not self._done.is_set():
            for conn in list(self.connections):
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    try:  # the plain socket's shutdown: an SSLSocket's would also drop its SSL object
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
            self._done.wait(0.05)
