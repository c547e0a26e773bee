"""Every response carries the security headers (geekai/security_headers.py)."""
from __future__ import annotations

from ..security_headers import HEADERS


def init_app(app) -> None:
    app.after_request(add_security_headers)


def add_security_headers(response):
    headers = response.headers
    if any(name in headers for name, _ in HEADERS):   # a view set one of its own: keep it
        for name, value in HEADERS:
            headers.setdefault(name, value)
    else:
        headers.extend(HEADERS)
    return response
