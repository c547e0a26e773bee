"""Counters for the status page, computed from the event history: logins, failures, uptime."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, jsonify

from ..db import db, utcnow
from ..models import BotEvent
from ..states import Actor, State
from .auth import admin_required

bp = Blueprint("stats", __name__, url_prefix="/api/bot")

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# Where the bot goes on its own when something fails; the same states entered by an admin's
# hand (a logout, a stop) are not failures.
FAILURE_STATES = (State.RETRYING, State.ERROR, State.NEEDS_LOGIN)
# Less history than this says little: a bot logged in for a minute is not "1.2% up" (shown as —).
MIN_OBSERVED = timedelta(hours=1)


def bot_stats(now: datetime | None = None) -> dict:
    """Logins, failures and uptime % for each window, newest data included."""
    now = now or utcnow()
    return {name: window_stats(now - length, now) for name, length in WINDOWS.items()}


def window_stats(start: datetime, end: datetime) -> dict:
    """Counters over [start, end]; uptime only over the part of it the history covers."""
    before = db.session.execute(
        db.select(BotEvent.at, BotEvent.to_state).where(BotEvent.at < start)
        .order_by(BotEvent.id.desc()).limit(1)).first()
    rows = db.session.execute(
        db.select(BotEvent.at, BotEvent.from_state, BotEvent.to_state, BotEvent.actor)
        .where(BotEvent.at >= start, BotEvent.at <= end).order_by(BotEvent.id)).all()
    return {
        "logins": sum(1 for row in rows if row.to_state == State.LOGGED_IN),
        "failures": sum(1 for row in rows if is_failure(row.from_state, row.to_state, row.actor)),
        "uptime_percent": uptime_percent(before, rows, start, end),
    }


def is_failure(from_state: str, to_state: str, actor: str) -> bool:
    """A transition the bot made on its own into a failure state, or out of logged_in."""
    return actor == Actor.BOT and (to_state in FAILURE_STATES or from_state == "logged_in")


def uptime_percent(before, rows, start: datetime, end: datetime) -> float | None:
    """Share of the observed time spent logged_in; None while less than MIN_OBSERVED was observed.

    Without an event before `start`, the window only begins at the first event: a service
    installed two hours ago has an uptime over those two hours, not over a week it never ran.
    """
    state, moment = (before.to_state, start) if before else (None, rows[0].at if rows else end)
    observed_from, up = moment, timedelta()
    for row in rows:
        if state == State.LOGGED_IN:
            up += row.at - moment
        state, moment = row.to_state, row.at
    if state == State.LOGGED_IN:
        up += end - moment
    observed = end - observed_from
    return round(100 * up / observed, 1) if observed >= MIN_OBSERVED else None


@bp.get("/stats")
@admin_required
def stats():
    return jsonify(bot_stats())
