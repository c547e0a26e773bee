"""Serving behind HTTPS: the session cookie is Secure whenever the request came over HTTPS.

The admin's session cookie must not travel over plain HTTP once the site is reached over
HTTPS, yet `python app.py` on a LAN is plain HTTP and a Secure cookie would never come back.
So the flag follows each request: Secure whenever the request itself arrived over HTTPS, or
always when SESSION_COOKIE_SECURE is set.

Behind a reverse proxy, waitress applies the proxy's X-Forwarded-For/-Proto/-Host (from
PROXY_COUNT proxies at PROXY_ADDRESS, see geekai/server.py) before the app sees the request,
so `request.is_secure` and `request.remote_addr` are the client's; under gunicorn, geekai.wsgi
wraps the app in the same waitress code. That is the one place the headers are read: a second
reader here would apply the hops twice.
"""
from __future__ import annotations

import logging
import os

from flask import request
from flask.sessions import SecureCookieSessionInterface

logger = logging.getLogger(__name__)


class PerRequestSecureSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions whose Secure flag follows the request's scheme."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def open_session(self, app, request):
        # Without a cookie there is nothing to verify: skip building a signer for each API call.
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        # An empty session nobody changed sets no cookie: skip working out the cookie's options.
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def init_app(app) -> None:
    """Install the session interface."""
    app.session_interface = PerRequestSecureSessions()
    if app.config["PROXY_COUNT"] and os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        logger.warning("PROXY_COUNT is applied by `python app.py` (waitress); `flask run` ignores "
                       "X-Forwarded-* headers")
