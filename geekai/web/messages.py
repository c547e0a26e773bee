"""Messages over HTTP: POST /api/messages queues a text, GET lists the feed (admin only)."""
from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, jsonify, request, url_for

from ..db import db
from ..messages import feed, sender
from ..messages.models import DIRECTIONS, FAILED, MAX_CONTACT, MAX_KEY, STATUSES, Message
from . import reasons
from .auth import admin_required
from .params import MAX_ID, BadParameter, check_json, whole_number

bp = Blueprint("messages_api", __name__, url_prefix="/api")

MAX_PAGE = 500
DEFAULT_PAGE = 100
PAGE_SECTION = 50
# The page's filter: what each choice shows.
PAGE_FILTERS = {"all": {}, "in": {"direction": "in"}, "out": {"direction": "out"}, "failed": {"status": FAILED}}
EXAMPLE = '{"to": "张三", "text": "你好", "key": "order-42-paid"}'



def init_app(app) -> None:
    """Register the messages API (its page texts: geekai/web/texts/)."""
    app.register_blueprint(bp)


class BadInput(Exception):
    """A request field that cannot be used: 400 naming it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _bad(field: str, message: str):
    response = jsonify(error=message, field=field)
    response.status_code = 400
    return response


def shown(message: Message) -> dict:
    """A message as the API gives it: with its error's code and Chinese form (the English stays in
    `error`, for scripts), as the bot's reasons have (geekai/web/reasons.py)."""
    row = message.to_dict()
    return row | {"error_code": reasons.code_of(row["error"]), "error_zh": reasons.render(row["error"], "zh")}


# ----- POST /api/messages ------------------------------------------------------------------

def _string(body: dict, field: str, *, required: bool, most: int, what: str, too_long: str = "") -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise BadInput(field, f"{field} is required: {what}")
        return None
    if not isinstance(value, str):
        raise BadInput(field, f"{field} must be a string ({what}), not {type(value).__name__}")
    if not value.strip():
        raise BadInput(field, f"{field} must not be empty ({what})")
    if "\x00" in value:
        raise BadInput(field, f"{field} must not contain NUL characters")
    if len(value) > most:
        raise BadInput(field, f"{field} is {len(value)} characters, over the limit of {most}{too_long}")
    return value


def parse_message(body) -> tuple[str, str, str | None]:
    """(to, text, key) of a POST body, or BadInput naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise BadInput("body", f"send a JSON object such as {EXAMPLE}")
    to = _string(body, "to", required=True, most=MAX_CONTACT,
                 what="the contact id to send to, the `contact` of a message the bot received")
    text = _string(body, "text", required=True, most=current_app.config["MESSAGE_MAX_CHARS"],
                   what="the text to send", too_long=(" (MESSAGE_MAX_CHARS): a longer text is refused, not split;"
                                                      " send it as several messages"))
    key = _string(body, "key", required=False, most=MAX_KEY,
                  what="an idempotency key: the same key again returns the first message")
    return to, text, key


def _json_body():
    if not request.data:
        raise BadInput("body", f"the body is empty; send a JSON object such as {EXAMPLE}")
    try:
        body = json.loads(request.data)
    except ValueError:  # UnicodeDecodeError included
        raise BadInput("body", f"the body is not valid JSON; send a JSON object such as {EXAMPLE}") from None
    except RecursionError:
        raise BadInput("body", f"the body is nested too deep; send a JSON object such as {EXAMPLE}") from None
    try:
        check_json(body)  # a lone surrogate no database can store, nesting past any use
    except BadParameter as bad:
        field = bad.parameter if bad.parameter in ("to", "text", "key") else "body"
        raise BadInput(field, bad.description) from None
    return body


@bp.post("/messages")
@admin_required
def post_message():
    """Queue a text for a contact: 202 with the message; the same key again: 200 with the first."""
    try:
        to, text, key = parse_message(_json_body())
    except BadInput as bad:
        return _bad(bad.field, str(bad))
    message, created = feed.queue_outgoing(to, text, key)
    if not created and (message.contact, message.text) != (to, text):
        response = jsonify(error=f"key {key!r} was used already, for message {message.id} with another "
                                 "recipient or text: use a new key for a new message",
                           field="key", message=shown(message))
        response.status_code = 409
        return response
    answer = jsonify(shown(message))
    answer.status_code = 202 if created else 200
    answer.headers["Location"] = url_for(".get_message", message_id=message.id)
    if created:
        sender.wake(current_app._get_current_object())
    return answer


# ----- GET ---------------------------------------------------------------------------------

@bp.get('/messages/<id(name="message_id"):message_id>')
@admin_required
def get_message(message_id: int):
    message = db.session.get(Message, message_id)
    if message is None:
        return jsonify(error=f"no message {message_id}"), 404
    return jsonify(shown(message))


def _whole(name: str, least: int, most: int = MAX_ID) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return whole_number(name, value, least, most)
    except BadParameter:  # past 64 bits too: no database could compare it
        abort(_bad(name, f"{name} must be a whole number from {least} to {most} (got {value[:30]!r})"))


def _choice(name: str, options) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in options:
        abort(_bad(name, f"{name} must be one of {', '.join(options)} (got {value!r})"))
    return value


@bp.get("/messages")
@admin_required
def list_messages():
    """The feed, oldest first after ?after_id= (or ?order=newest: newest first, before ?before_id=),
    filtered by ?direction=in|out, ?status=, ?contact=."""
    order = _choice("order", ("oldest", "newest")) or "oldest"
    after_id, before_id = _whole("after_id", 0), _whole("before_id", 1)
    limit = _whole("limit", 1, MAX_PAGE) or DEFAULT_PAGE
    contact = request.args.get("contact")
    if contact is not None and (len(contact) > MAX_CONTACT or "\x00" in contact):
        return _bad("contact", f"contact must be a contact id of at most {MAX_CONTACT} characters, without NUL")
    rows = feed.listing(direction=_choice("direction", DIRECTIONS), status=_choice("status", STATUSES),
                        contact=contact, after_id=after_id, before_id=before_id,
                        limit=limit, newest=order == "newest")
    page, more = rows[:limit], len(rows) > limit
    answer = {"messages": [shown(m) for m in page], "has_more": more}
    if order == "oldest":
        # Where the next poll starts: the last id shown, or the same cursor when nothing was new.
        answer["next_after_id"] = page[-1].id if page else (after_id or 0)
    else:
        answer["next_before_id"] = page[-1].id if more else None
    return jsonify(answer)


def page_section(choice: str | None) -> dict:
    """The status page's messages card: the newest messages for the chosen filter."""
    choice = choice if choice in PAGE_FILTERS else "all"
    rows = feed.listing(limit=PAGE_SECTION, newest=True, **PAGE_FILTERS[choice])[:PAGE_SECTION]
    return {"filter": choice, "filters": list(PAGE_FILTERS), "rows": [shown(m) for m in rows],
            "query": PAGE_FILTERS[choice] | {"order": "newest", "limit": PAGE_SECTION}}
