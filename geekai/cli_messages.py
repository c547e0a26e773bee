"""`bot send TO TEXT` and `bot messages`: the messages API from a terminal or a deploy script.

`bot send` exits 0 once the message is sent, 1 if it failed (or is still queued when --timeout
runs out), 2 when the service cannot be asked or refuses the request (bad input, wrong token).
"""
from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlencode

import click

from .cli_client import Client, ServiceError, pass_client
from .display_time import LABEL, shown

SENT, NOT_SENT = 0, 1
POLL_SECONDS = 0.5


def _message(client: Client, answer: dict, path: str) -> dict:
    if not isinstance(answer.get("id"), int) or not isinstance(answer.get("status"), str):
        raise ServiceError(f"{client.url}{path} answered without a message; is GEEKAI_URL the geekai service?")
    return answer


def _describe(message: dict) -> str:
    text = f"message {message['id']} to {message['contact']!r}: {message['status']}"
    if message.get("error"):
        text += f" ({message['error']})"
    return text


@click.command()
@click.argument("to")
@click.argument("text")
@click.option("--key", default=None, help="idempotency key: the same key again returns the first message, sent once")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until the message is sent or failed, or return once it is queued")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              help="seconds to wait for the outcome (with --wait)")
@click.option("--json", "as_json", is_flag=True, help="print the message as JSON")
@pass_client
def send(client: Client, to: str, text: str, key: str | None, wait: bool, timeout: float, as_json: bool):
    """Send TEXT to the contact TO. Exit 0 sent, 1 failed or not sent in time, 2 unreachable or refused."""
    body = {"to": to, "text": text} | ({"key": key} if key else {})
    _, message = client.json("POST", "/api/messages", ok=(200, 202), body=body)
    message = _message(client, message, "/api/messages")
    deadline = time.monotonic() + timeout
    path = f"/api/messages/{message['id']}"
    while wait and message["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        message = _message(client, client.json("GET", path)[1], path)
    click.echo(json.dumps(message, ensure_ascii=False) if as_json else _describe(message))
    if message["status"] == "sent" or (not wait and message["status"] == "queued"):
        sys.exit(SENT)
    if message["status"] == "queued":
        click.echo(f"not sent within {timeout:g} s; it stays queued and goes out once the bot is online "
                   "(see `bot status`)", err=True)
    sys.exit(NOT_SENT)


@click.command()
@click.option("--direction", type=click.Choice(["in", "out"]), default=None)
@click.option("--status", type=click.Choice(["received", "queued", "sent", "failed"]), default=None)
@click.option("--after-id", type=click.IntRange(min=0), default=None,
              help="the feed's cursor: messages after this id, oldest first (default: the latest ones)")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the API's answer as JSON")
@pass_client
def messages(client: Client, direction: str | None, status: str | None, after_id: int | None, limit: int,
             as_json: bool):
    """Messages in and out, oldest at the top."""
    query = {"direction": direction, "status": status, "limit": limit}
    query |= {"after_id": after_id} if after_id is not None else {"order": "newest"}
    path = "/api/messages?" + urlencode({k: v for k, v in query.items() if v is not None})
    _, answer = client.json("GET", path)
    if not isinstance(answer.get("messages"), list):
        raise ServiceError(f"{client.url}/api/messages answered without messages; is GEEKAI_URL the geekai service?")
    rows = answer["messages"] if after_id is not None else list(reversed(answer["messages"]))
    if as_json:
        click.echo(json.dumps(answer | {"messages": rows}, ensure_ascii=False, indent=1))
        return
    if rows:
        click.echo(f"{'#':<7} {'time (' + LABEL + ')':<19}  dir  contact  [status] text")
    for m in rows:
        state = "" if m["direction"] == "in" else f"[{m['status']}{': ' + m['error'] if m.get('error') else ''}] "
        click.echo(f"#{m['id']:<6} {shown(m['created_at'])}  {m['direction']:<3}  {m['contact']}  {state}{m['text']}")
