"""The simulated phone of demo mode: the page's buttons act on the built-in emulator.

Only with BOT_BACKEND=demo (the real wxpy code logs in to an in-process web-WeChat emulator) or
demo-ilink (the real iLink adapter against an in-process iLink emulator); geekai/bot/runtime.py
starts them. These routes play the phone's part; the bot side is unchanged.
"""
from __future__ import annotations

import collections
import decimal
import re
import threading

from flask import Blueprint, abort, current_app, jsonify, request

from .auth import admin_required
from .params import BadParameter, text_field

bp = Blueprint("demo", __name__, url_prefix="/api/demo")

EMULATOR = "geekai.emulator"
DEMOS = ("demo", "demo-ilink")

MAX_TEXT = 500
MAX_NOTE = 100
MAX_AMOUNT = decimal.Decimal("100000")
AMOUNT_SHAPE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,2})?")
CHAT_LENGTH = 20


class PhoneChat:
    """The texts this phone sent, newest last, so the panel can show them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._texts = collections.deque(maxlen=CHAT_LENGTH)

    def add(self, message_id: str, text: str) -> None:
        with self._lock:
            self._texts.append({"id": message_id, "text": text})

    def texts(self) -> list[dict]:
        with self._lock:
            return list(self._texts)


def demo_enabled(app) -> bool:
    """Whether this process runs the demo emulator (and so shows the simulated phone)."""
    return app.config["BOT_BACKEND"] in DEMOS and EMULATOR in app.extensions


def ilink_demo(app) -> bool:
    return app.config["BOT_BACKEND"] == "demo-ilink"


def emulator_or_404():
    app = current_app
    if not demo_enabled(app):
        abort(404, description="the simulated phone exists only in demo mode (python app.py --demo)")
    return app.extensions[EMULATOR]


def phone_actions(emulator) -> dict:
    """What each of the phone's buttons does, on this demo's emulator."""
    if ilink_demo(current_app):
        return {"scan": emulator.scan, "scan_code": lambda: emulator.scan(code=True), "confirm": emulator.confirm,
                "expire": emulator.expire_qr, "logout": emulator.expire_session}
    return {"scan": emulator.scan, "confirm": emulator.confirm, "expire": emulator.expire_qr,
            "logout": emulator.logout}


def phone_chat() -> PhoneChat:
    return current_app.extensions.setdefault("geekai.demo_chat", PhoneChat())


def phone_view(emulator) -> dict:
    """What the panel shows: the phone's side of the login, and whether the bot got each text."""
    snapshot = emulator.snapshot()
    pending = snapshot["pending_messages"]
    texts = phone_chat().texts()
    # The emulator delivers in order, so all but the newest `pending` texts reached the bot.
    # New dicts: the stored ones are shared with other requests.
    view = {"phone": snapshot["state"],
            "texts": [dict(text, delivered=index < len(texts) - pending) for index, text in enumerate(texts)]}
    if "code" in snapshot:  # iLink's phone may show a verification code
        view["code"] = snapshot["code"]
    return view


@bp.get("/phone")
@admin_required
def phone():
    return jsonify(phone_view(emulator_or_404()))


def _form(field: str) -> dict:
    """The form, or the JSON object; anything else is a 400 naming `field` (what the action needs first)."""
    body = request.form or request.get_json(silent=True) or {}
    if not isinstance(body, dict):  # MultiDict is a dict too
        raise BadParameter(field, "sent as a form field or in a JSON object such as {\"%s\": \"...\"}" % field)
    return body


def payment_amount(body: dict) -> str:
    """The amount the phone pays, as WeChat Pay writes it ("12.00"); 400 naming `amount` otherwise."""
    text = text_field(body, "amount", 20).strip().lstrip("￥¥")
    amount = decimal.Decimal(text) if AMOUNT_SHAPE.fullmatch(text) else None
    if amount is None or not decimal.Decimal("0.01") <= amount <= MAX_AMOUNT:
        raise BadParameter("amount", f"an amount in yuan from 0.01 to {MAX_AMOUNT} with at most 2 decimals, "
                                     "such as 12.00")
    return f"{amount:.2f}"


@bp.post("/phone/<any(pay, forge):action>")
@admin_required
def phone_payment(action: str):
    """A WeChat Pay notice reaches the bot: from the official account (pay) or a renamed friend (forge)."""
    emulator = emulator_or_404()
    if ilink_demo(current_app):
        abort(404, description="iLink carries no WeChat Pay notices: payments need the web-WeChat demo "
                               "(python app.py --demo)")
    body = _form("amount")
    amount = payment_amount(body)
    note = text_field(body, "note", MAX_NOTE).strip()
    ok = emulator.state == "logged_in"
    if ok:
        sent = emulator.send_payment_notice(amount, note=note or None, forged=action == "forge")
        label = f"{'⚠ ' if action == 'forge' else ''}￥{amount}" + (f" · {note}" if note else "")
        phone_chat().add(str(sent["MsgId"]), label)
    return jsonify(ok=bool(ok), **phone_view(emulator))


@bp.post("/phone/<any(scan, scan_code, confirm, expire, logout, send_text):action>")
@admin_required
def phone_action(action: str):
    """Do what a person does on the phone; ok=false when the phone had nothing to act on."""
    emulator = emulator_or_404()
    if action == "send_text":
        text = text_field(_form("text"), "text", MAX_TEXT).strip()
        if not text:
            raise BadParameter("text", f"1 to {MAX_TEXT} characters")
        ok = emulator.state == "logged_in"
        if ok:
            sent = emulator.send_text(text)
            phone_chat().add(str(sent.get("MsgId") or sent.get("message_id")), text)
    else:
        act = phone_actions(emulator).get(action)
        ok = act() if act is not None else False
    return jsonify(ok=bool(ok), **phone_view(emulator))
