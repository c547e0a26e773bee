"""The JSON API: bot state, history, login QR and controls (admin only)."""
from __future__ import annotations

import json
import re

from flask import Blueprint, Response, current_app, jsonify, redirect, request, url_for

from ..bot import runtime as bot_runtime
from ..bot.state_cache import state_cache
from ..db import db
from ..models import BotEvent
from .auth import actor, admin_required
from .params import int_arg, limit_arg
from .reasons import annotate

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 200
# The number iLink's login may ask for: what the phone shows (Tencent's plugin takes 1 to 10 digits).
VERIFY_CODE = re.compile(r"\d{1,10}")


def current_state() -> dict:
    """The state row as the API shows it: from the cache the state store keeps (state_cache.py),
    annotated once per change."""
    return state_cache(current_app).get().derive("api", _annotated)


def _annotated(cached) -> dict:
    return annotate(cached.view)


def _state_json(cached) -> bytes:
    return (json.dumps(cached.derive("api", _annotated), sort_keys=True, separators=(",", ":")) + "\n").encode()


@bp.get("/bot")
@admin_required
def bot_state():
    return Response(state_cache(current_app).get().derive("json", _state_json), mimetype="application/json")


def event_page(limit: int, before: int | None = None) -> tuple[list[dict], str | None]:
    """A page of history, newest first, and the URL of the page before it (None at the start)."""
    query = db.select(BotEvent).order_by(BotEvent.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(BotEvent.id < before)
    events = db.session.execute(query).scalars().all()
    page = events[:limit]
    following = url_for("api.bot_events", limit=limit, before=page[-1].id) if len(events) > limit else None
    return [annotate(event.to_dict()) for event in page], following


@bp.get("/bot/events")
@admin_required
def bot_events():
    """Transition history, newest first; `before` (an event id) pages back."""
    limit = limit_arg(50, MAX_PAGE)
    before = int_arg("before")
    events, following = event_page(limit, before)
    return jsonify(events=events, next=following)


@bp.get("/bot/qr.png")
@admin_required
def bot_qr():
    """The login QR while waiting for a scan; it is a credential, so never cached."""
    cached = state_cache(current_app).get()
    if cached.state != "waiting_for_scan" or not cached.qr_png:
        return jsonify(error="no login QR right now", state=cached.state), 404
    return Response(cached.qr_png, mimetype="image/png", headers={"Cache-Control": "no-store"})


def _control(command: str, args: dict | None = None):
    runtime = bot_runtime.get(current_app)
    if runtime is None or not runtime.enabled:
        reason = "the bot is disabled" if runtime else "the bot does not run in this process"
        return jsonify(error=reason, state=current_state()), 409 if runtime else 503
    outcome = runtime.command(command, actor(), args)
    if outcome is not None and outcome.status >= 400:
        return jsonify(error=outcome.error, state=current_state()), outcome.status
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return redirect(url_for("pages.index"))  # a plain form post from the page, without JS
    if outcome is None:  # queued for the process that runs the bot, which has not taken it yet
        return jsonify(queued=True, state=current_state(),
                       error="the process that runs the bot has not taken the command yet"), 202
    return jsonify(current_state()), 202


@bp.post("/bot/<any(login, start, stop, logout):command>")
@admin_required
def bot_control(command: str):
    return _control(command)


@bp.post("/bot/verify")
@admin_required
def bot_verify():
    """The number the phone shows, for an iLink login that asks for it: {"code": "1234"}."""
    data = request.get_json(silent=True) if request.is_json else request.form
    code = data.get("code") if isinstance(data, dict) or hasattr(data, "getlist") else None
    if not isinstance(code, str) or not VERIFY_CODE.fullmatch(code.strip()):
        return jsonify(error='code must be the number the phone shows: 1 to 10 digits, as a string ("1234")',
                       field="code"), 400
    return _control("verify", {"code": code.strip()})
