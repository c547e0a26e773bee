"""`flask --app app bot ...` and `python -m geekai bot ...`: the running service, from a terminal.

The messages commands (`bot send`, `bot messages`) are in cli_messages.py, the HTTP client and
the --url/--instance options the commands share in cli_client.py.

The commands talk HTTP to the service (GEEKAI_URL, default http://127.0.0.1:5000) with the API
token (GEEKAI_API_TOKEN, else the token in the instance folder), so they work the same on the
server, over SSH, and from a deploy script. Exit codes are for scripts:
0 logged in (or done), 1 not logged in (or timed out), 2 error, unreachable or token refused.
"""
from __future__ import annotations

import io
import json
import sys
import time

import click

from .cli_client import TROUBLE, Client, Connection, ServiceError, connection_options, pass_client
from .cli_messages import messages, send
from .display_time import LABEL, shown

LOGGED_IN, NOT_LOGGED_IN = 0, 1


@click.group("bot")
@connection_options
@click.pass_context
def bot(context):
    """Ask the running geekai service about its WeChat bot."""
    context.ensure_object(Connection)


bot.add_command(send)
bot.add_command(messages)


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
