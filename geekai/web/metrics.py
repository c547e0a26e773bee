"""Prometheus metrics at /metrics: the bot, alerts, the outbox, messages and HTTP traffic.

Everything that must survive a restart (transitions, login attempts, incidents, deliveries,
messages) is read from the database at scrape time, so a counter never falls back to zero
because the process was replaced. What only the running process knows (heartbeat age, messages
in and out of this process, HTTP requests) is read from it. Each app has its own CollectorRegistry: tests build many apps
in one interpreter and the global registry would refuse their duplicate metric names.
prometheus_client is imported at the first scrape, not in create_app.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from flask import Blueprint, Response, abort, current_app, g, jsonify, request
from sqlalchemy import Integer, func

from .. import states
from ..db import db, utcnow
from ..models import STATE_ROW_ID, WATCHDOG_RESTART, BotEvent, BotState
from .auth import bearer_ok

logger = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

REGISTRY = "geekai.metrics.registry"
HTTP = "geekai.metrics.http"

# The states a login attempt is in until it ends; an attempt's result is the state the bot
# itself (actor "bot") ends it in. A person's stop or logout mid-login cancels it; their "new QR"
# (back to starting) and the service shutting down (actor "system") end no attempt.
LOGIN_PHASE = {states.STARTING, states.WAITING_FOR_SCAN, states.WAITING_FOR_CONFIRM}
LOGIN_RESULT = {
    states.LOGGED_IN: "success",
    states.RETRYING: "failure",
    states.STARTING: "failure",          # session rejected at once: a fresh attempt follows
    states.NEEDS_LOGIN: "needs_login",
    states.ERROR: "error",
}
CANCELLED_BY_ADMIN = {states.STOPPED, states.NEEDS_LOGIN}


def login_result(old: str, new: str, actor: str) -> str | None:
    """How a transition ended a login attempt, or None when it ended none."""
    if old not in LOGIN_PHASE:
        return None
    if actor == states.Actor.BOT:
        return LOGIN_RESULT.get(new)
    return "cancelled" if states.by_admin(actor) and new in CANCELLED_BY_ADMIN else None


class HttpStats:
    """Requests served by this process, by endpoint, method and status."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # endpoint -> [count, sum]

    def add(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, str(status))] += 1
            entry = self.durations[endpoint]
            entry[0] += 1
            entry[1] += seconds

    def snapshot(self):
        with self._lock:
            return dict(self.requests), {k: tuple(v) for k, v in self.durations.items()}


def init_app(app) -> None:
    """Count every request and serve /metrics."""
    app.extensions[HTTP] = HttpStats()
    app.before_request(_started)
    app.after_request(_finished)
    app.register_blueprint(bp)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _finished(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "<unmatched>"
        current_app.extensions[HTTP].add(endpoint, request.method, response.status_code,
                                         time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics():
    """The Prometheus text format; METRICS=token needs the API token, METRICS=off is a 404."""
    mode = current_app.config["METRICS"]
    if mode == "off":
        abort(404)
    if mode == "token" and not bearer_ok():
        response = jsonify(error="metrics need Authorization: Bearer <API_TOKEN>")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="geekai"'
        return response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(registry(current_app)), headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                                     "Cache-Control": "no-store"})


def registry(app):
    """This app's registry, built at the first scrape."""
    found = app.extensions.get(REGISTRY)
    if found is None:
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        found = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=found)
        PlatformCollector(registry=found)
        found.register(GeekaiCollector(app))
        app.extensions[REGISTRY] = found
    return found


class GeekaiCollector:
    """Reads the database and the running bot at each scrape (called with an app context)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("geekai_database_up", "1 when the database answered this scrape")
        try:
            families = list(self._from_database())
        except Exception:
            logger.exception("metrics: database query failed")
            db.session.rollback()
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families
        yield from self._from_process()

    # -- what survives a restart -------------------------------------------------------------
    def _from_database(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        row = db.session.get(BotState, STATE_ROW_ID)
        current = row.state if row else states.STOPPED
        state = GaugeMetricFamily("geekai_bot_state", "1 for the state the bot is in, 0 for the others",
                                  labels=["state"])
        for name in states.ALL:
            state.add_metric([name], 1 if name == current else 0)
        yield state
        since = GaugeMetricFamily("geekai_bot_state_seconds", "Seconds the bot has been in its current state")
        since.add_metric([], max(0.0, (utcnow() - row.since).total_seconds()) if row else 0.0)
        yield since

        rows = db.session.execute(db.select(BotEvent.from_state, BotEvent.to_state, BotEvent.actor, func.count())
                                  .group_by(BotEvent.from_state, BotEvent.to_state, BotEvent.actor)).all()
        transitions = CounterMetricFamily("geekai_bot_transitions", "State transitions recorded (all processes)",
                                          labels=["from_state", "to_state"])
        attempts = CounterMetricFamily("geekai_bot_login_attempts",
                                       "Login attempts by how they ended: success, failure, needs_login, error, cancelled",
                                       labels=["result"])
        results = dict.fromkeys(sorted({*LOGIN_RESULT.values(), "cancelled"}), 0)
        pairs: dict[tuple[str, str], int] = defaultdict(int)
        for old, new, actor, count in rows:
            pairs[(old, new)] += count
            result = login_result(old, new, actor)
            if result is not None:
                results[result] += count
        for (old, new), count in sorted(pairs.items()):
            transitions.add_metric([old, new], count)
        for result, count in results.items():
            attempts.add_metric([result], count)
        yield transitions
        yield attempts
        restarts = CounterMetricFamily("geekai_bot_watchdog_restarts", "Restarts of a bot found silent or dead")
        restarts.add_metric([], db.session.execute(
            db.select(func.count(BotEvent.id)).where(WATCHDOG_RESTART)).scalar())
        yield restarts
        yield from _alert_families(self.app.config)
        yield from _message_families()

    # -- what only this process knows ------------------------------------------------------
    def _from_process(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        runtime = self.app.extensions.get("geekai.bot")  # bot/runtime.py's, without importing APScheduler
        supervisor = runtime.supervisor if runtime is not None else None
        heartbeat = supervisor.last_heartbeat() if supervisor is not None else None
        if heartbeat is not None:
            age = GaugeMetricFamily("geekai_bot_last_sync_age_seconds",
                                    "Seconds since the bot's last successful sync with WeChat (absent when offline)")
            age.add_metric([], max(0.0, time.monotonic() - heartbeat))
            yield age
        stats = supervisor.stats if supervisor is not None else {}
        messages = CounterMetricFamily("geekai_bot_messages",
                                       "Messages received, replies sent and replies WeChat refused, by this process",
                                       labels=["direction"])
        messages.add_metric(["in"], stats.get("messages_in", 0))
        messages.add_metric(["out"], stats.get("messages_out", 0))
        messages.add_metric(["failed"], stats.get("messages_failed", 0))
        yield messages

        requests, durations = self.app.extensions[HTTP].snapshot()
        total = CounterMetricFamily("geekai_http_requests", "HTTP requests served by this process",
                                    labels=["endpoint", "method", "status"])
        for labels, count in sorted(requests.items()):
            total.add_metric(list(labels), count)
        yield total
        timing = SummaryMetricFamily("geekai_http_request_duration_seconds",
                                     "Time to build the response (streams: until the first byte)", labels=["endpoint"])
        for endpoint, (count, seconds) in sorted(durations.items()):
            timing.add_metric([endpoint], count, seconds)
        yield timing


def _alert_families(config):
    """Incidents and outbox deliveries."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from ..alerts.channels import configured
    from ..alerts.models import Incident
    from ..outbox import OutboxMessage

    open_count, total = db.session.execute(
        db.select(func.count(Incident.id).filter(Incident.closed_at.is_(None)), func.count(Incident.id))).one()
    opened = GaugeMetricFamily("geekai_incidents_open", "Incidents open now (bot down, needs a login, error, flapping)")
    opened.add_metric([], open_count)
    yield opened
    every = CounterMetricFamily("geekai_incidents", "Incidents opened since the database was created")
    every.add_metric([], total)
    yield every
    rows = db.session.execute(db.select(OutboxMessage.topic, OutboxMessage.status, func.count(),
                                        db.cast(func.coalesce(func.sum(OutboxMessage.attempts), 0), Integer))
                              .group_by(OutboxMessage.topic, OutboxMessage.status)).all()
    outbox = GaugeMetricFamily("geekai_outbox_messages", "Outbox messages by topic and status",
                               labels=["topic", "status"])
    alerts = GaugeMetricFamily("geekai_alert_deliveries",
                               "Alert messages by channel and result: pending, delivered, failed",
                               labels=["channel", "status"])
    tries = CounterMetricFamily("geekai_alert_delivery_attempts", "Delivery attempts made for alert messages",
                                labels=["channel"])
    # Configured channels show zeros before their first message, so alert rules have a series.
    channels = configured(config)
    per_status = {(channel, status): 0 for channel in channels for status in ("pending", "delivered", "failed")}
    per_channel: dict[str, int] = dict.fromkeys(channels, 0)
    for topic, status, count, attempts in rows:
        outbox.add_metric([topic, status], count)
        if topic.startswith("alert."):
            channel = topic.removeprefix("alert.")
            per_status[(channel, status)] = count
            per_channel[channel] = per_channel.get(channel, 0) + attempts
    for (channel, status), count in sorted(per_status.items()):
        alerts.add_metric([channel, status], count)
    for channel, attempts in sorted(per_channel.items()):
        tries.add_metric([channel], attempts)
    yield outbox
    yield alerts
    yield tries


def _message_families():
    """Messages kept (MESSAGE_RETENTION_DAYS) by direction and status, and the send queue's age."""
    from prometheus_client.core import GaugeMetricFamily

    from ..messages.models import IN, OUT, OUT_STATUSES, QUEUED, RECEIVED, Message

    counts = {(IN, RECEIVED): 0} | {(OUT, status): 0 for status in OUT_STATUSES}
    for direction, status, count in db.session.execute(
            db.select(Message.direction, Message.status, func.count()).group_by(Message.direction, Message.status)):
        counts[(direction, status)] = count
    family = GaugeMetricFamily("geekai_messages", "Messages in the database by direction and status: "
                               "received; queued, sent, failed", labels=["direction", "status"])
    for (direction, status), count in sorted(counts.items()):
        family.add_metric([direction, status], count)
    yield family
    oldest = db.session.execute(db.select(func.min(Message.created_at))
                                .where(Message.direction == OUT, Message.status == QUEUED)).scalar()
    age = GaugeMetricFamily("geekai_messages_queued_oldest_seconds",
                            "Age of the oldest message waiting to be sent (0 when none waits)")
    age.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)
    yield age
