"""What every `bot` command shares: the HTTP client of the running service, where it is (--url,
GEEKAI_URL, GEEKAI_HOST:GEEKAI_PORT) and whose API token to use (--instance, GEEKAI_API_TOKEN).

A service that cannot be asked is a ServiceError: one line on stderr and exit code 2.
"""
from __future__ import annotations

import functools
import http.client
import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import click

from . import ROOT

DEFAULT_URL = "http://127.0.0.1:5000"
TROUBLE = 2


class ServiceError(click.ClickException):
    """The service could not be asked: not running, token refused, unexpected answer (exit 2)."""

    exit_code = TROUBLE

    def format_message(self) -> str:
        return self.message

    def show(self, file=None) -> None:
        click.echo(f"geekai: {self.message}", err=True)


class Client:
    """Bearer-token JSON requests to the running service."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        host = urlsplit(self.url).hostname or ""
        # A proxy from the environment must not capture loopback (as curl's NO_PROXY would not).
        handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, ok=(200,), body: dict | None = None) -> tuple[int, bytes, str]:
        """(status, body, content type); raises ServiceError when it cannot be asked. `body` is
        sent as JSON."""
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else b"" if method == "POST" else None
        request = urllib.request.Request(self.url + path, method=method, data=data)
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (http.client.HTTPException, OSError):
                body = b""
            if exc.code == 401 and not self.token:
                raise ServiceError("no API token found: set GEEKAI_API_TOKEN, or pass --instance with the "
                                   "service's instance folder") from None
            if exc.code == 401:
                raise ServiceError(f"the service at {self.url} refused the API token "
                                   "(set GEEKAI_API_TOKEN, or pass --instance with the service's instance folder)") from None
            if exc.code in ok:
                return exc.code, body, exc.headers.get("Content-Type", "")
            raise ServiceError(f"{method} {path} answered HTTP {exc.code}: {_error_text(body)}") from None
        except http.client.HTTPException as exc:
            # Not an HTTP answer (BadStatusLine), or one cut short (IncompleteRead).
            raise ServiceError(f"{self.url}{path} did not answer HTTP properly ({type(exc).__name__}); "
                               "is GEEKAI_URL the geekai service?") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"the service is not running at {self.url} ({reason}); start it with "
                               "`python app.py` (or `systemctl start geekai`), or set GEEKAI_URL") from None

    def json(self, method: str, path: str, ok=(200,), body: dict | None = None) -> tuple[int, dict]:
        """(status, the JSON object answered); anything but an object is a ServiceError."""
        status, body, _ = self.request(method, path, ok, body)
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServiceError(f"{self.url}{path} did not answer a JSON object; is GEEKAI_URL the geekai service?")
        return status, answer

    def state(self) -> dict:
        """GET /api/bot: the bot's state, which must name the state."""
        _, answer = self.json("GET", "/api/bot")
        if not isinstance(answer.get("state"), str):
            raise ServiceError(f"{self.url}/api/bot answered without a bot state; is GEEKAI_URL the geekai service?")
        return answer


def _error_text(body: bytes) -> str:
    try:
        return json.loads(body).get("error") or body.decode(errors="replace")[:200]
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]


def find_token(instance: str | None) -> str | None:
    """GEEKAI_API_TOKEN, else the running app's token under `flask`, else instance/secrets.json."""
    from flask.cli import ScriptInfo

    if os.environ.get("GEEKAI_API_TOKEN"):
        return os.environ["GEEKAI_API_TOKEN"]
    context = click.get_current_context(silent=True)
    info = context.find_object(ScriptInfo) if context else None
    if info is not None and instance is None:
        return info.load_app().config.get("API_TOKEN")
    from .instance_secrets import read_stored

    folder = instance or os.environ.get("GEEKAI_INSTANCE_PATH") or os.path.join(ROOT, "instance")
    try:
        stored = read_stored(folder)
    except (OSError, ValueError) as exc:
        raise ServiceError(f"cannot read the API token from {os.path.join(folder, 'secrets.json')} "
                           f"({type(exc).__name__}: {exc}); set GEEKAI_API_TOKEN instead") from None
    token = stored.get("API_TOKEN") if isinstance(stored, dict) else None
    return token if isinstance(token, str) else None


def default_url() -> str:
    """GEEKAI_URL, else the address `python app.py` serves on: GEEKAI_HOST and GEEKAI_PORT."""
    if os.environ.get("GEEKAI_URL"):
        return os.environ["GEEKAI_URL"]
    host = os.environ.get("GEEKAI_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "*"):  # listening everywhere: ask it on loopback
        host = "127.0.0.1"
    port = os.environ.get("GEEKAI_PORT") or "5000"
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ServiceError(f"GEEKAI_PORT must be a port number from 1 to 65535, not {port!r}")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Connection:
    """Where the service is and whose token to use: set on `bot` or on any subcommand, later wins."""

    def __init__(self):
        self.url: str | None = None
        self.instance: str | None = None
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url or default_url(), find_token(self.instance))
        return self._client


def _remember(context, param, value):
    if value is not None:
        setattr(context.ensure_object(Connection), param.name, value)
    return value


def connection_options(command):
    """--url and --instance, accepted before the subcommand (`bot --instance D status`) and after it."""
    command = click.option("--url", default=None, expose_value=False, callback=_remember, is_eager=True,
                           help=f"the running service (default: GEEKAI_URL, else http://GEEKAI_HOST:GEEKAI_PORT, "
                                f"else {DEFAULT_URL})")(command)
    return click.option("--instance", type=click.Path(file_okay=False), default=None, expose_value=False,
                        callback=_remember, is_eager=True,
                        help="instance folder to read the API token from (default: GEEKAI_INSTANCE_PATH, else "
                             f"{os.path.join(ROOT, 'instance')}, the checkout's own, whatever the current "
                             "directory)")(command)


def pass_client(command):
    """Call the command with the Client its options (or its group's) name."""
    @functools.wraps(command)
    def call(*args, **kwargs):
        return command(click.get_current_context().find_object(Connection).client(), *args, **kwargs)
    return connection_options(call)
