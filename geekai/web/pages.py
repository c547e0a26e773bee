"""The status page."""
from __future__ import annotations

from flask import Blueprint, render_template

from ..db import db
from ..models import BotEvent
from .api import current_state
from .auth import is_admin

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """Public: whether the service and bot are up. Admin: state, QR, history, controls."""
    state = current_state()
    admin = is_admin()
    events = []
    if admin:
        query = db.select(BotEvent).order_by(BotEvent.id.desc()).limit(20)
        events = [event.to_dict() for event in db.session.execute(query).scalars()]
    return render_template("index.html", state=state if admin else None,
                           online=state["state"] == "logged_in", admin=admin, events=events)
