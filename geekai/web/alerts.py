"""GET /api/alerts: incidents and the delivery of each notice, so that failures are visible."""
from __future__ import annotations

import uuid

from flask import Blueprint, current_app, jsonify

from ..alerts import channels
from ..alerts.incidents import open_incident
from ..alerts.models import Incident
from ..alerts.notices import send_one_off
from ..db import db
from .auth import admin_required
from .params import limit_arg

bp = Blueprint("alerts", __name__, url_prefix="/api/alerts")


def _deliveries(incident_ids: list[int]) -> dict[int, list[dict]]:
    """The deliveries of each of these incidents, in one query."""
    from ..outbox import OutboxMessage

    found: dict[int, list[dict]] = {incident_id: [] for incident_id in incident_ids}
    if not incident_ids:
        return found
    prefixes = [OutboxMessage.idempotency_key.startswith(f"incident-{i}-", autoescape=True) for i in incident_ids]
    rows = db.session.execute(db.select(OutboxMessage).where(db.or_(*prefixes))
                              .order_by(OutboxMessage.id)).scalars()
    for row in rows:
        found[int(row.idempotency_key.split("-")[1])].append(_delivery(row))
    return found


# The idempotency key's prefix -> the one-off notice it belongs to (see send_one_off's callers).
ONE_OFF_PREFIXES = {"test-": channels.TEST, "forged-payment-": channels.FORGED_PAYMENT}


def _notice(key: str) -> str:
    """opened / reminderN / resolved for an incident's message, else the one-off notice's kind."""
    if key.startswith("incident-"):
        return key.split("-")[2]
    return next((kind for prefix, kind in ONE_OFF_PREFIXES.items() if key.startswith(prefix)), "other")


def _delivery(row) -> dict:
    shown = row.to_dict()
    shown["channel"] = row.topic.removeprefix("alert.")
    shown["notice"] = _notice(row.idempotency_key)
    return shown


def delivery_counts() -> dict:
    """Alert messages in the outbox by status."""
    from ..outbox import OutboxMessage

    counts = dict(db.session.execute(
        db.select(OutboxMessage.status, db.func.count()).where(OutboxMessage.topic.startswith("alert."))
        .group_by(OutboxMessage.status)).all())
    return {status: counts.get(status, 0) for status in ("pending", "delivered", "failed")}


def summary() -> dict:
    """What the status page's alert card shows: channels, the open incident, undelivered messages."""
    incident = open_incident()
    return {"channels": channels.configured(current_app.config), "deliveries": delivery_counts(),
            "incident": incident.to_dict() if incident is not None else None}


@bp.get("")
@admin_required
def list_incidents():
    """Newest incidents first, each with its deliveries, and the outbox's alert messages by status."""
    limit = limit_arg(20, 100)
    incidents = db.session.execute(db.select(Incident).order_by(Incident.id.desc()).limit(limit)).scalars().all()
    deliveries = _deliveries([incident.id for incident in incidents])
    return jsonify(
        channels=channels.configured(current_app.config),
        open=next((i.id for i in incidents if i.closed_at is None), None),
        deliveries=delivery_counts(),
        incidents=[incident.to_dict() | {"deliveries": deliveries[incident.id]} for incident in incidents],
    )


@bp.post("/test")
@admin_required
def send_test():
    """Queue a test notice to every configured channel (not an incident)."""
    queued = send_one_off(channels.TEST, "test message from geekai: alerts reach you", f"test-{uuid.uuid4().hex[:12]}",
                          current_app.config)
    db.session.commit()
    if not queued:
        return jsonify(error="no alert channel is configured (ALERT_*_URL, ALERT_SMTP_URL + ALERT_EMAIL_TO)"), 409
    return jsonify(deliveries=[_delivery(m) for m in queued]), 202
