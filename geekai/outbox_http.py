"""The outbox's HTTP transport: one POST per message, its whole exchange bounded by a watchdog.

Its own module so that `requests` loads with the first send, not on the way to the first answer.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import requests
from requests.adapters import HTTPAdapter

from . import outbox
from .outbox import SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliveryError, OutboxMessage, _check_robot_verdict, sign


def send_http(app, message: OutboxMessage) -> None:
    """POST the message; raise DeliveryError on anything but a 2xx answer the robot accepted."""
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
    adapter = _WatchedAdapter()
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
    _check_robot_verdict(message.topic, text)


def _read_capped(response) -> bytes:
    limit = outbox.MAX_ANSWER_BYTES   # read at each send (a test lowers it)
    chunks, size = [], 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


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
