"""The status page: public up/down for everyone; state, QR, history and controls for the admin."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from ..alerts.views import summary as alerts_summary
from .api import current_state, event_page
from .auth import is_admin
from .demo import demo_enabled, ilink_demo
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
    events, older_url = event_page(HISTORY_PAGE)
    return render_template("index.html", admin=True, online=online, state=state,
                           events=events, older_url=older_url, page_size=HISTORY_PAGE,
                           stats=bot_stats(), demo=demo_enabled(current_app), demo_ilink=ilink_demo(current_app),
                           alerts=alerts_summary())

