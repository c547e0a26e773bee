"""`flask --app app bot ...` and `python -m geekai bot ...`: the running service, from a terminal.

The commands talk HTTP to the service (GEEKAI_URL, default http://127.0.0.1:5000) with the API
token (GEEKAI_API_TOKEN, else the token in the instance folder), so they work the same on the
server, over SSH, and from a deploy script. Exit codes are for scripts:
0 logged in (or done), 1 not logged in (or timed out), 2 error, unreachable or token refused.
"""
from __future__ import annotations

import functools
import http.client
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import click

from . import ROOT
from .display_time import LABEL, shown

DEFAULT_URL = "http://127.0.0.1:5000"
LOGGED_IN, NOT_LOGGED_IN, TROUBLE = 0, 1, 2


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
        """(status, body, content type); raises ServiceError when it cannot be asked."""
        data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
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


@click.group("bot")
@connection_options
@click.pass_context
def bot(context):
    """Ask the running geekai service about its WeChat bot."""
    context.ensure_object(Connection)


def _describe(state: dict) -> str:
    text = state["state"]
    if state.get("account"):
        text += f" as {state['account']}"
    if state.get("reason"):
        text += f": {state['reason']}"
    if state.get("since"):
        text += f" (since {shown(state['since'])} {LABEL})"
    return text


def _exit_code(state: str) -> int:
    return LOGGED_IN if state == "logged_in" else TROUBLE if state == "error" else NOT_LOGGED_IN


@bot.command()
@click.option("--json", "as_json", is_flag=True, help="print the state as JSON")
@pass_client
def status(client: Client, as_json: bool):
    """Show the bot's state. Exit 0 logged in, 1 not logged in, 2 error or unreachable."""
    try:
        state = client.state()
    except ServiceError as exc:
        if as_json:
            click.echo(json.dumps({"state": None, "error": exc.message}))
        raise
    click.echo(json.dumps(state, ensure_ascii=False) if as_json else _describe(state))
    sys.exit(_exit_code(state["state"]))


@bot.command()
@click.option("--wait/--no-wait", default=False, help="wait until logged in (reprinting new QRs)")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              help="seconds to wait for logged_in (with --wait) or for a QR (without)")
@click.option("--invert", is_flag=True, help="draw the QR for a terminal with a light background")
@pass_client
def login(client: Client, wait: bool, timeout: float, invert: bool):
    """Start a login and print the QR to scan; with --wait, wait until logged in."""
    status_code, answer = client.json("POST", "/api/bot/login", ok=(202, 409))
    if status_code == 409:
        state = answer.get("state") or {}
        if state.get("state") == "logged_in":
            click.echo(f"already {_describe(state)}")
            sys.exit(LOGGED_IN)
        raise ServiceError(f"login refused: {answer.get('error')}")
    deadline = time.monotonic() + timeout
    shown_qr, shown_state, asked = b"", "", ""
    while True:
        state = client.state()
        name = state["state"]
        if wait and name == "waiting_for_confirm" and state.get("verify_code_required") and state.get("since") != asked:
            asked = state.get("since")  # one prompt per request for a code (a wrong one asks again)
            _enter_code(client, wrong=state.get("verify_code") == "wrong")
            continue
        if name == "logged_in":
            click.echo(f"logged in{' as ' + state['account'] if state.get('account') else ''}")
            sys.exit(LOGGED_IN)
        if name == "waiting_for_scan":
            png = _qr_png(client)
            if png and png != shown_qr:
                shown_qr = png
                click.echo(render_qr(png, invert=invert))
                click.echo(f"scan this QR with WeChat on the bot's phone (expires {shown(state.get('qr_expires_at'))} "
                           f"{LABEL})")
                if not wait:
                    sys.exit(0)  # the QR is out; the deploy script goes on
        elif name != shown_state and name in ("waiting_for_confirm", "retrying", "starting"):
            click.echo(_describe(state))
        if name in ("error", "disabled", "needs_login", "stopped"):
            # The POST left the bot `starting`: any of these means the attempt has ended.
            click.echo(f"login did not complete: {_describe(state)}", err=True)
            sys.exit(TROUBLE if name in ("error", "disabled") else NOT_LOGGED_IN)
        shown_state = name
        if time.monotonic() >= deadline:
            click.echo(f"timed out after {timeout:g} s; the bot is {_describe(state)}", err=True)
            sys.exit(NOT_LOGGED_IN)
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _enter_code(client: Client, wrong: bool) -> None:
    """iLink asks for the number the phone shows: read it on the terminal and pass it on."""
    question = ("That code did not match: enter the number shown on the phone again" if wrong
                else "The phone shows a number: enter it here")
    try:
        code = click.prompt(question, value_proc=_digits).strip()
    except click.Abort:
        click.echo("\nno code entered here: enter it on the status page (or POST /api/bot/verify)", err=True)
        return
    status, answer = client.json("POST", "/api/bot/verify", ok=(202, 400, 409), body={"code": code})
    if status != 202:
        click.echo(f"the code was not taken: {answer.get('error')}", err=True)


def _digits(value: str) -> str:
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise click.BadParameter("the code is the 1 to 10 digits the phone shows")
    return value


def _qr_png(client: Client) -> bytes:
    status_code, body, kind = client.request("GET", "/api/bot/qr.png", ok=(200, 404))
    return body if status_code == 200 and body.startswith(b"\x89PNG") else b""


@bot.command()
@pass_client
def logout(client: Client):
    """Log the bot out at WeChat and forget its session (a new login needs a scan)."""
    _, state = client.json("POST", "/api/bot/logout", ok=(202,))
    click.echo(_describe(state))


@bot.command()
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the events as JSON")
@pass_client
def events(client: Client, limit: int, as_json: bool):
    """The bot's latest state transitions, newest first."""
    _, answer = client.json("GET", f"/api/bot/events?limit={limit}")
    if not isinstance(answer.get("events"), list):
        raise ServiceError(f"{client.url}/api/bot/events answered without events; is GEEKAI_URL the geekai service?")
    if as_json:
        click.echo(json.dumps(answer["events"], ensure_ascii=False, indent=1))
        return
    click.echo(f"{'time (' + LABEL + ')':<19}  {'from':>19} -> {'to':<19}  {'by':<12}  reason")
    for event in answer["events"]:
        click.echo(f"{shown(event['at'])}  {event['from']:>19} -> {event['to']:<19}  {event['actor']:<12}  "
                   f"{event['reason']}")


# -- the QR in a terminal ----------------------------------------------------------------------
def qr_modules(png_bytes: bytes) -> list[list[bool]]:
    """The QR's modules (True = dark) from a rendered PNG at any scale, quiet zone removed."""
    import png

    width, height, rows, _ = png.Reader(file=io.BytesIO(png_bytes)).asRGBA8()
    dark = [[px[3] > 127 and px[0] + px[1] + px[2] < 384 for px in zip(*[iter(row)] * 4)] for row in rows]
    marked = [(y, x) for y in range(height) for x in range(width) if dark[y][x]]
    if not marked:
        raise ValueError("no QR in the image")
    top, left = min(y for y, _ in marked), min(x for _, x in marked)
    right = max(x for _, x in marked)
    run = 0
    while left + run <= right and dark[top][left + run]:
        run += 1
    scale = run / 7  # the top-left finder pattern is 7 modules wide
    size = round((right - left + 1) / scale)
    return [[dark[min(height - 1, int(top + (r + 0.5) * scale))][min(width - 1, int(left + (c + 0.5) * scale))]
             for c in range(size)] for r in range(size)]


def render_qr(png_bytes: bytes, invert: bool = False, quiet: int = 2) -> str:
    """The QR as UTF-8 half blocks, two modules per character cell.

    Like `qrencode -t UTF8`, light modules are drawn (for the usual dark terminal); `invert`
    draws the dark ones instead, for light backgrounds.
    """
    modules = qr_modules(png_bytes)
    size = len(modules) + 2 * quiet
    padded = [[False] * size for _ in range(quiet)]
    padded += [[False] * quiet + row + [False] * quiet for row in modules]
    padded += [[False] * size for _ in range(quiet + (size % 2))]
    lines = []
    for top, bottom in zip(padded[0::2], padded[1::2]):
        cells = []
        for upper, lower in zip(top, bottom):
            upper, lower = (upper, lower) if invert else (not upper, not lower)
            cells.append("█" if upper and lower else "▀" if upper else "▄" if lower else " ")
        lines.append("".join(cells))
    return "\n".join(lines)


def init_app(app) -> None:
    """Add the `bot` command group to `flask`."""
    app.cli.add_command(bot)
