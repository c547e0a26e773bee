"""The outbox's deliveries (payment and message callbacks, alerts): one list, one page, one retry.

`GET /api/deliveries` (?status=, ?topic= prefix such as `alert.`), `GET /deliveries` (the page),
`POST /api/deliveries/<id>/retry`: 202 with the delivery once it is due again, 409 when it was
delivered or is being sent right now, 404 when there is none. The page's retry button posts the
same endpoint as a form and comes back to the page.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from .. import display_time, outbox
from ..db import db
from ..outbox import OutboxMessage
from .auth import admin_required, is_admin
from .params import BadParameter, limit_arg

bp = Blueprint("deliveries", __name__)

MAX_PAGE = 1000


def _status_arg() -> str | None:
    value = request.args.get("status") or None
    if value is not None and value not in outbox.STATUSES:
        raise BadParameter("status", f"one of {', '.join(outbox.STATUSES)}")
    return value


def query(status: str | None, topic: str | None, limit: int):
    """Deliveries, newest first."""
    select = db.select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status:
        select = select.where(OutboxMessage.status == status)
    if topic:
        select = select.where(OutboxMessage.topic.startswith(topic, autoescape=True))
    return db.session.execute(select).scalars().all()


@bp.get("/api/deliveries")
@admin_required
def list_deliveries():
    rows = query(_status_arg(), request.args.get("topic"), limit_arg(100, MAX_PAGE))
    return jsonify(deliveries=[row.to_dict() for row in rows])


@bp.post('/api/deliveries/<id(name="delivery_id"):message_id>/retry')
@admin_required
def retry_delivery(message_id: int):
    """Make a failed or waiting delivery due now."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        return jsonify(error=f"no delivery {message_id}"), 404
    retried = outbox.retry(message_id)
    if _from_the_page():
        return redirect(url_for(".deliveries_page", status=request.args.get("status") or None))
    if not retried:
        return jsonify(error=f"delivery {message_id} is already delivered or being sent right now (it may be in "
                             "flight: a second send could deliver it twice)", delivery=message.to_dict()), 409
    return jsonify(db.session.get(OutboxMessage, message_id, populate_existing=True).to_dict()), 202


def _from_the_page() -> bool:
    """The deliveries page's button: its form carries the page's CSRF token and wants the page back."""
    return "csrf_token" in request.form


@bp.get("/deliveries")
def deliveries_page():
    if not is_admin():
        return redirect(url_for("auth.login"))
    status = _status_arg()
    return render_template("deliveries.html", admin=True, deliveries=query(status, None, 500),
                           statuses=outbox.STATUSES, args=request.args, local=display_time.shown,
                           redact=outbox.redact, redact_text=outbox.redact_text)
