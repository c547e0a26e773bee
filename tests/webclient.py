"""A browser-like HTTP client for real-socket tests: its own cookies, raw headers, no redirects."""
from __future__ import annotations

import http.client
import json
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit


class Answer:
    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def cookie_lines(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


class Browser:
    """Talks to one server; keeps the cookies it is given, sends `headers` with every request."""

    def __init__(self, url: str, **headers):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}
        self.headers = headers

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            sent = dict(self.headers, **(headers or {}))
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=sent)
            answer = Answer(conn.getresponse())
        finally:
            conn.close()
        for line in answer.cookie_lines():
            for name, morsel in SimpleCookie(line).items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **headers) -> Answer:
        return self.request("GET", path, headers=headers)

    def post_form(self, path: str, fields: dict, **headers) -> Answer:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **headers})

    def post_json(self, path: str, value, **headers) -> Answer:
        data = value if isinstance(value, (bytes, str)) else json.dumps(value)
        return self.request("POST", path, data.encode() if isinstance(data, str) else data,
                            {"Content-Type": "application/json", **headers})

    def csrf_token(self, path: str = "/login") -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path).text)
        assert match, f"no CSRF token in {path}"
        return match.group(1)

    def sign_in(self, password: str) -> Answer:
        return self.post_form("/login", {"password": password, "csrf_token": self.csrf_token()})

    def sign_out(self) -> Answer:
        return self.post_form("/logout", {"csrf_token": self.csrf_token("/")})
