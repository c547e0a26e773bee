"""The status page: public up/down for everyone; state, QR, history and controls for the admin."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from ..alerts.views import summary as alerts_summary
from .api import current_state, event_page
from .auth import is_admin
from .demo import demo_enabled, ilink_demo
from .reasons import annotate_alerts
from .stats import bot_stats
from .stream import HISTORY_PAGE

bp = Blueprint("pages", __name__)

# The states in which each control does something useful; elsewhere its button is disabled (the
# API still answers: 409 for a login while logged in). A demo or a script may still ask anything.
CONTROL_STATES = {
    "login": ("stopped", "waiting_for_scan", "retrying", "needs_login", "error"),
    "logout": ("starting", "waiting_for_confirm", "logged_in", "retrying", "stopped", "error"),
    "stop": ("starting", "waiting_for_scan", "waiting_for_confirm", "logged_in", "retrying", "needs_login", "error"),
    "start": ("stopped", "error"),
}
# Controls that end something a person cannot simply undo: the page asks first.
CONFIRM = {"logout": "confirm_logout", "stop": "confirm_stop"}


@bp.get("/")
def index():
    """Public: whether the service and bot are up. Admin: everything the live page shows."""
    state = current_state()
    online = state["state"] == "logged_in"
    if not is_admin():
        return render_template("index.html", admin=False, online=online)
    events, older_url = event_page(HISTORY_PAGE)
    return render_template("index.html", admin=True, online=online, state=state,
                           events=events, older_url=older_url, page_size=HISTORY_PAGE,
                           stats=bot_stats(), demo=demo_enabled(current_app), demo_ilink=ilink_demo(current_app),
                           alerts=annotate_alerts(alerts_summary()), control_states=CONTROL_STATES, confirm=CONFIRM)

