"""Liveness and readiness probes."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..db import db
from ..models import STATE_ROW_ID, BotState

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process serves. Never looks at the bot or the database."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: the database answers and, when BOT_REQUIRED, the bot is logged in."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        return jsonify(status="not ready", reason=f"database unavailable: {type(exc).__name__}"), 503
    if current_app.config["BOT_REQUIRED"]:
        row = db.session.get(BotState, STATE_ROW_ID)
        if row is None or row.state != "logged_in":
            state = row.state if row else "stopped"
            return jsonify(status="not ready", reason=f"BOT_REQUIRED and the bot is {state}"), 503
    return jsonify(status="ok")
