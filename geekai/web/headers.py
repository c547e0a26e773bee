"""Every response carries the security headers (geekai/security_headers.py)."""
from __future__ import annotations

from ..security_headers import HEADERS


def init_app(app) -> None:
    app.after_request(add_security_headers)


def add_security_headers(response):
    for name, value in HEADERS:
        response.headers.setdefault(name, value)
    return response
