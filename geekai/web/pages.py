"""The status page: public up/down for everyone; state, QR, history and controls for the admin."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from ..db import db
from ..models import BotEvent
from .api import current_state
from .auth import is_admin
from .demo import demo_enabled
from .stats import bot_stats
from .stream import HISTORY_PAGE

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """Public: whether the service and bot are up. Admin: everything the live page shows."""
    state = current_state()
    online = state["state"] == "logged_in"
    if not is_admin():
        return render_template("index.html", admin=False, online=online)
    query = db.select(BotEvent).order_by(BotEvent.id.desc()).limit(HISTORY_PAGE + 1)
    events = [event.to_dict() for event in db.session.execute(query).scalars()]
    return render_template("index.html", admin=True, online=online, state=state,
                           events=events[:HISTORY_PAGE], more=len(events) > HISTORY_PAGE,
                           stats=bot_stats(), demo=demo_enabled(current_app), alerts=alert_summary())


def alert_summary() -> dict:
    """What the alert card shows: channels, the open incident, undelivered alert messages."""
    from ..alerts import channels
    from ..alerts.views import delivery_counts, open_incident

    incident = open_incident()
    return {"channels": channels.configured(current_app.config), "deliveries": delivery_counts(),
            "incident": incident.to_dict() if incident is not None else None}
