"""Server-sent events for the status page: a message per state change, read from the database.

Each open stream holds one of waitress's worker threads for as long as the page is open, so
the number of streams is capped (STREAM_MAX_CLIENTS, below the thread count): past the cap the
page gets 503 and polls /api/bot instead, and /healthz always finds a free thread.
"""
from __future__ import annotations

import json
import threading
import time

from flask import Blueprint, Response, current_app, jsonify, request, session

from .. import admin_session
from ..bot.store import change_signal
from ..db import db, isoformat, utcnow
from ..models import BotEvent
from .alerts import summary as alerts_summary
from .reasons import annotate, annotate_alerts
from .api import current_state
from .auth import admin_required, bearer_ok
from .params import last_event_id
from .stats import bot_stats

bp = Blueprint("stream", __name__, url_prefix="/api/bot")

HEARTBEAT_SECONDS = 15.0
# How often an idle stream looks whether its client went away, to free the thread soon.
LIVENESS_SECONDS = 1.0
RETRY_MILLISECONDS = 2000
HISTORY_PAGE = 20
MAX_CATCH_UP = 100


class StreamSlots:
    """A counted set of stream places; taking one never blocks."""

    def __init__(self, size: int):
        self.size = size
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.size:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


def end_streams(app) -> None:
    """Make every open stream finish now: the server is shutting down and waits for its threads."""
    app.extensions.setdefault("geekai.streams_ending", threading.Event()).set()
    change_signal(app).notify()


def stream_slots(app) -> StreamSlots:
    """The app's stream places."""
    return app.extensions.setdefault("geekai.stream_slots", StreamSlots(app.config["STREAM_MAX_CLIENTS"]))


@bp.get("/stream")
@admin_required
def bot_stream():
    """text/event-stream: `state` messages (state, new history rows, counters) and `ping`s."""
    app = current_app._get_current_object()
    last_id = last_event_id()
    gone = request.environ.get("waitress.client_disconnected", lambda: False)
    slots = stream_slots(app)
    if not slots.take():
        response = jsonify(error=f"{slots.size} live pages are open already; poll /api/bot instead")
        return response, 503, {"Retry-After": "30"}
    try:
        response = Response(messages(app, last_id, gone, signed_in_check(app)), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        # On close, not in the generator's `finally`: a generator that never started has no finally.
        response.call_on_close(_once(slots.give))
    except BaseException:
        slots.give()  # a place taken by a request that never became a stream would be lost for good
        raise
    return response


def _once(func):
    """func, callable any number of times but run only the first."""
    done = threading.Event()

    def run():
        if not done.is_set():
            done.set()
            func()
    return run


def signed_in_check(app):
    """For a stream opened with the admin's cookie: whether that sign-in still holds (a logout
    or a new password ends it). A bearer token's stream holds as long as the token."""
    if bearer_ok():
        return lambda: True
    signed_in_as = session.get("v")

    def still_signed_in() -> bool:
        with app.app_context():
            return admin_session.current_version(app.config) == signed_in_as
    return still_signed_in


def messages(app, last_id: int | None, gone, still_signed_in=lambda: True):
    """The stream: a snapshot at once, then one per change, a ping when quiet; ends when `gone`,
    or before the next message once the admin's sign-in has ended."""
    signal = change_signal(app)
    ending = app.extensions.setdefault("geekai.streams_ending", threading.Event())
    version = signal.version  # read before the snapshot, so no change slips between the two
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    text, last_id = snapshot(app, last_id, version)
    yield text
    quiet_since = time.monotonic()
    while not gone():
        seen = signal.wait(version, LIVENESS_SECONDS)
        if ending.is_set():
            return
        if seen != version or time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            if not still_signed_in():
                return
        if seen != version:
            version = seen
            text, last_id = snapshot(app, last_id, version)
            yield text
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            yield f"event: ping\ndata: {json.dumps(isoformat(utcnow()))}\n\n"
            quiet_since = time.monotonic()


def snapshot(app, last_id: int | None, version: int) -> tuple[str, int | None]:
    """One `state` message and the newest event id it carries."""
    with app.app_context():
        events, reset = new_events(last_id)
    body = shared_view(app, version) | {"events": [annotate(event.to_dict()) for event in events], "reset": reset}
    newest = body["events"][0]["id"] if events else last_id
    head = f"id: {newest}\n" if newest is not None else ""
    return f"{head}event: state\ndata: {json.dumps(body, ensure_ascii=False)}\n\n", newest


class SharedView:
    """What every open page shows (state, counters, alerts), computed once per change for all."""

    def __init__(self):
        self._lock = threading.Lock()
        self.version: int | None = None
        self.view: dict = {}

    def get(self, app, version: int) -> dict:
        with self._lock:
            if self.version != version:
                with app.app_context():
                    self.view = {"state": current_state(), "stats": bot_stats(), "alerts": annotate_alerts(alerts_summary())}
                self.version = version
            return self.view


def shared_view(app, version: int) -> dict:
    return app.extensions.setdefault("geekai.stream_view", SharedView()).get(app, version)


def new_events(last_id: int | None) -> tuple[list[BotEvent], bool]:
    """Events after last_id, newest first; or the newest page, with reset=True, to start over."""
    if last_id is not None:
        query = db.select(BotEvent).where(BotEvent.id > last_id).order_by(BotEvent.id.desc())
        events = db.session.execute(query.limit(MAX_CATCH_UP + 1)).scalars().all()
        if len(events) <= MAX_CATCH_UP:
            return events, False
    query = db.select(BotEvent).order_by(BotEvent.id.desc()).limit(HISTORY_PAGE)
    return db.session.execute(query).scalars().all(), True
