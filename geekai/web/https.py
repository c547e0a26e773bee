"""Serving behind HTTPS: trust a reverse proxy's X-Forwarded-* and mark the session cookie Secure.

The admin's session cookie must not travel over plain HTTP once the site is reached over
HTTPS, yet `python app.py` on a LAN is plain HTTP and a Secure cookie would never come back.
So the flag follows each request: Secure whenever the request itself arrived over HTTPS
(directly, or per X-Forwarded-Proto from PROXY_COUNT trusted proxies), or always when
SESSION_COOKIE_SECURE is set.
"""
from __future__ import annotations

from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix


class PerRequestSecureSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions whose Secure flag follows the request's scheme."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app) -> None:
    """Install the session interface and, when configured, the proxy header fix."""
    app.session_interface = PerRequestSecureSessions()
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        # Only as many hops as the operator declared: a client could forge the rest.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)
