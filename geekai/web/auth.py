"""Admin authentication: a session after the login form, or a bearer API token.

The session cookie carries the server-side session version (geekai/admin_session.py) and the
time of the sign-in: a logout or a new password ends every cookie issued before, and a cookie
older than SESSION_LIFETIME_SECONDS is refused, however often it was used.

Wrong passwords are throttled per client, and a browser that signed in before is a client of
its own (a signed device cookie), so that a guesser, even one behind the same address or
proxy, locks out only itself: the admin's browser still gets in.
"""
from __future__ import annotations

import functools
import hmac
import logging
import secrets
import threading
import time
from collections import defaultdict, deque

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.security import check_password_hash

from .. import admin_session
from ..states import Actor
from ..bot.store import change_signal
from . import csrf

logger = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

# Failed logins allowed per client in FAILURE_WINDOW seconds.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
# Clients remembered at once before the quiet ones are forgotten (addresses are cheap to rotate).
MAX_CLIENTS = 10000
# Endpoints that must answer without the database (liveness) or need no session (files).
_NO_SESSION_CHECK = ("health.healthz", "static")
# The browser's device cookie: set at a successful sign-in, it names that browser's own throttle.
DEVICE_COOKIE = "geekai_device"
DEVICE_COOKIE_SECONDS = 365 * 86400


class FailedLogins:
    """Recent failed password attempts per client, to slow down guessing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._times: dict[str, deque] = defaultdict(deque)

    def blocked(self, client: str) -> bool:
        with self._lock:
            times = self._times[client]
            while times and times[0] < time.monotonic() - FAILURE_WINDOW:
                times.popleft()
            if not times:
                del self._times[client]  # no memory kept for clients that stopped guessing
            return len(times) >= MAX_FAILURES

    def add(self, client: str) -> None:
        with self._lock:
            if len(self._times) >= MAX_CLIENTS:
                cutoff = time.monotonic() - FAILURE_WINDOW
                for quiet in [key for key, times in self._times.items() if not times or times[-1] < cutoff]:
                    del self._times[quiet]
            self._times[client].append(time.monotonic())

    def clear(self, client: str) -> None:
        with self._lock:
            self._times.pop(client, None)


def failed_logins() -> FailedLogins:
    """This app's record of failed logins."""
    return current_app.extensions.setdefault("geekai.failed_logins", FailedLogins())


def _devices() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="geekai-device")


def throttle_key() -> str:
    """Whose failures a login attempt counts against: the browser's device, or its address."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if cookie:
        try:
            return "device " + str(_devices().loads(cookie))
        except BadSignature:
            pass
    return "address " + (request.remote_addr or "?")


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


def check_session() -> None:
    """Before every request: an admin cookie of an older version, or past its lifetime, ends."""
    if request.endpoint in _NO_SESSION_CHECK or not session.get("admin"):
        return
    signed_in = session.get("at")
    too_old = not isinstance(signed_in, (int, float)) or \
        time.time() - signed_in > current_app.config["SESSION_LIFETIME_SECONDS"]
    if too_old or session.get("v") != admin_session.current_version(current_app.config):
        session.clear()
        g.session_ended = True


def is_admin() -> bool:
    return bool(session.get("admin")) or bearer_ok()


def actor() -> str:
    """Who is acting, for the event history."""
    return Actor.API_TOKEN if bearer_ok() else Actor.ADMIN_WEB


def admin_required(view):
    """JSON 401 without admin rights; state-changing requests from a browser need a CSRF token."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not is_admin():
            ended = " (your session ended: signed out, password changed or expired)" if g.get("session_ended") else ""
            response = jsonify(error=f"authentication required{ended}: log in or send Authorization: Bearer <API_TOKEN>")
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
        key = throttle_key()
        if failed_logins().blocked(key):
            logger.warning("admin login from %s (%s) refused: too many failed attempts", client, key.split()[0])
            return render_template("login.html", error="too_many"), 429
        if password_ok(request.form.get("password", "")):
            failed_logins().clear(key)
            session.clear()
            session.permanent = True
            session["admin"] = True
            session["v"] = admin_session.current_version(current_app.config)
            session["at"] = int(time.time())
            logger.info("admin logged in from %s", client)
            response = redirect(url_for("pages.index"))
            if not key.startswith("device "):
                response.set_cookie(DEVICE_COOKIE, _devices().dumps(secrets.token_urlsafe(16)),
                                    max_age=DEVICE_COOKIE_SECONDS, httponly=True, samesite="Lax",
                                    secure=current_app.session_interface.get_cookie_secure(current_app))
            return response
        failed_logins().add(key)
        logger.warning("failed admin login from %s", client)
        error = "wrong_password"
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    """End the admin session, and with it every copy of the cookie (all browsers)."""
    csrf.protect()
    if session.get("admin"):
        admin_session.bump(current_app.config)
        change_signal(current_app).notify()  # this process's open live pages end at once
        logger.info("admin logged out: every admin session ends")
    session.clear()
    return redirect(url_for("pages.index"))


def init_app(app) -> None:
    app.before_request(check_session)
