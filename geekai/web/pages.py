"""The status page: public up/down for everyone; state, QR, history and controls for the admin."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from ..states import State
from .alerts import summary as alerts_summary
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
    "login": (State.STOPPED, State.WAITING_FOR_SCAN, State.RETRYING, State.NEEDS_LOGIN, State.ERROR),
    "logout": (State.STARTING, State.WAITING_FOR_CONFIRM, State.LOGGED_IN, State.RETRYING, State.STOPPED, State.ERROR),
    "stop": tuple(s for s in State if s not in (State.STOPPED, State.DISABLED)),
    "start": (State.STOPPED, State.ERROR),
}
# Controls that end something a person cannot simply undo: the page asks first.
CONFIRM = {"logout": "confirm_logout", "stop": "confirm_stop"}


@bp.get("/")
def index():
    """Public: whether the service and bot are up. Admin: everything the live page shows."""
    state = current_state()
    online = state["state"] == State.LOGGED_IN
    if not is_admin():
        return render_template("index.html", admin=False, online=online)
    events, older_url = event_page(HISTORY_PAGE)
    return render_template("index.html", admin=True, online=online, state=state,
                           events=events, older_url=older_url, page_size=HISTORY_PAGE,
                           stats=bot_stats(), demo=demo_enabled(current_app), demo_ilink=ilink_demo(current_app),
                           alerts=annotate_alerts(alerts_summary()), control_states=CONTROL_STATES, confirm=CONFIRM)

