"""Admin authentication: a session after the login form, or a bearer API token."""
from __future__ import annotations

import functools
import hmac
import logging
import threading
import time
from collections import defaultdict, deque

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash

from . import csrf

logger = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

# Failed logins allowed per client address in FAILURE_WINDOW seconds.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


class FailedLogins:
    """Recent failed password attempts per client address, to slow down guessing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._times: dict[str, deque] = defaultdict(deque)

    def blocked(self, client: str) -> bool:
        with self._lock:
            times = self._times[client]
            while times and times[0] < time.monotonic() - FAILURE_WINDOW:
                times.popleft()
            return len(times) >= MAX_FAILURES

    def add(self, client: str) -> None:
        with self._lock:
            self._times[client].append(time.monotonic())

    def clear(self, client: str) -> None:
        with self._lock:
            self._times.pop(client, None)


def failed_logins() -> FailedLogins:
    """This app's record of failed logins."""
    return current_app.extensions.setdefault("geekai.failed_logins", FailedLogins())


def bearer_ok() -> bool:
    """Whether the request carries the API token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = current_app.config["API_TOKEN"]
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def password_ok(given: str) -> bool:
    """Compare with the configured password, or with the hash of the generated one."""
    configured = current_app.config.get("ADMIN_PASSWORD")
    if configured:
        return hmac.compare_digest(given.encode(), configured.encode())
    return check_password_hash(current_app.config["ADMIN_PASSWORD_HASH"], given)


def is_admin() -> bool:
    return bool(session.get("admin")) or bearer_ok()


def actor() -> str:
    """Who is acting, for the event history."""
    return "api token" if bearer_ok() else "admin (web)"


def admin_required(view):
    """JSON 401 without admin rights; state-changing requests from a browser need a CSRF token."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not is_admin():
            response = jsonify(error="authentication required: log in or send Authorization: Bearer <API_TOKEN>")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="geekai"'
            return response
        if request.method not in ("GET", "HEAD", "OPTIONS") and not bearer_ok():
            csrf.protect()
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The admin login form."""
    error = None
    if request.method == "POST":
        csrf.protect()
        client = request.remote_addr or "?"
        if failed_logins().blocked(client):
            logger.warning("admin login from %s refused: too many failed attempts", client)
            return render_template("login.html", error="too_many"), 429
        if password_ok(request.form.get("password", "")):
            failed_logins().clear(client)
            session.clear()
            session["admin"] = True
            logger.info("admin logged in from %s", client)
            return redirect(url_for("pages.index"))
        failed_logins().add(client)
        logger.warning("failed admin login from %s", client)
        error = "wrong_password"
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    """End the admin session."""
    csrf.protect()
    session.clear()
    return redirect(url_for("pages.index"))
