"""Payments over HTTP: the ledger, orders, claims and callback deliveries (JSON API and admin pages)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta, timezone

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for

from .. import display_time
from ..db import db, isoformat, utcnow
from ..payments import ledger
from ..payments.models import ACCEPTED, NOTICE_STATUSES, ORDER_STATUSES, PAYMENT_STATUSES, Order, Payment, PaymentNotice
from ..payments.parser import amount_to_str
from .auth import actor, admin_required, is_admin
from .params import int_arg, limit_arg, text_field, time_arg, whole_number

api = Blueprint("payments_api", __name__, url_prefix="/api")
pages = Blueprint("payments_pages", __name__)

MAX_PAGE = 1000
# WeChat Pay personal receipts are a mainland-China thing: "today" is a day in China (UTC+8, no DST),
# the zone every time on the pages is shown in (geekai/display_time.py).
CHINA = display_time.ZONE


def init_app(app) -> None:
    """Register the payment API and pages (their texts: geekai/web/texts/)."""
    app.register_blueprint(api)
    app.register_blueprint(pages)


def _error(status: int, message: str):
    response = jsonify(error=message)
    response.status_code = status
    return response


def _limit() -> int:
    return limit_arg(100, MAX_PAGE)


# The ledger's filters, the only query parameters the CSV link carries on.
FILTERS = ("status", "since", "until", "after_id")


def filter_args() -> dict:
    """The page's filters as url_for() arguments (never other keys: _external, _scheme ...)."""
    return {key: request.args[key] for key in FILTERS if request.args.get(key)}


def _choice(name: str, options) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in options:
        abort(_error(400, f"{name} must be one of {', '.join(options)}"))
    return value


def payments_query():
    """The ledger filtered by ?status=, ?since= (received at or after), ?until= (received before;
    a date includes that whole day), ?after_id=.

    Received: when WeChat says it was paid, the time the page shows and the income totals count.
    """
    query = db.select(Payment)
    status = _choice("status", PAYMENT_STATUSES)
    since, until = time_arg("since", CHINA), time_arg("until", CHINA, end_of_day=True)
    if status:
        query = query.where(Payment.status == status)
    if since:
        query = query.where(Payment.received_at >= since)
    if until:
        query = query.where(Payment.received_at < until)
    after_id = int_arg("after_id")
    if after_id is not None:
        query = query.where(Payment.id > after_id)
    return query


# ----- JSON API ----------------------------------------------------------------------------

@api.get("/payments")
@admin_required
def list_payments():
    """The ledger, oldest first (for pulling); `next_after_id` continues the pull."""
    limit = _limit()
    rows = db.session.execute(payments_query().order_by(Payment.id).limit(limit + 1)).scalars().all()
    page = rows[:limit]
    return jsonify(payments=[p.to_dict() for p in page],
                   next_after_id=page[-1].id if len(rows) > limit else None)


@api.get("/payments/notices")
@admin_required
def list_notices():
    """Incoming notices, newest first: ?status=rejected|unparsed|... (raw XML with ?content=1)."""
    status = _choice("status", NOTICE_STATUSES)
    query = db.select(PaymentNotice).order_by(PaymentNotice.id.desc()).limit(_limit())
    if status:
        query = query.where(PaymentNotice.status == status)
    with_content = request.args.get("content") in ("1", "true")
    return jsonify(notices=[n.to_dict(with_content) for n in db.session.execute(query).scalars()])


@api.post("/payments/<tx_id>/claim")
@admin_required
def claim_payment(tx_id: str):
    """Claim a payment by hand (optionally for an order); a second claim answers 409."""
    body = request.get_json(silent=True) or request.form or {}
    if not hasattr(body, "get"):  # JSON that is not an object: [1], "x", 5
        return _error(400, 'send JSON such as {"claimed_by": "user-42", "order_id": 17}')
    order_id = body.get("order_id")
    if order_id is not None:
        order_id = whole_number("order_id", order_id if isinstance(order_id, (str, int)) else None)
    claimed_by = (text_field(body, "claimed_by", 200) or text_field(body, "reference", 200) or actor())[:200]
    try:
        payment, order = ledger.claim(tx_id, claimed_by, order_id)
    except ledger.ClaimRefused as refused:
        return _error(refused.status, str(refused))
    return jsonify(payment=payment.to_dict(), order=ledger.order_dict(order, payment) if order else None)


@api.post("/orders")
@admin_required
def create_order():
    """{"amount": "12.00", "reference": "..."} -> a pending order with a code for the payer's note."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, 'send JSON such as {"amount": "12.00", "reference": "order-42"}')
    try:
        cents = ledger.parse_amount(body.get("amount"))
    except ValueError as exc:
        return _error(400, str(exc))
    reference = text_field(body, "reference", 200)
    ttl = body.get("ttl_seconds", current_app.config["ORDER_TTL_SECONDS"])
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 10 <= ttl <= 30 * 86400:
        return _error(400, "ttl_seconds must be a number of seconds between 10 and 2592000")
    order = ledger.create_order(cents, reference, ttl)
    response = jsonify(order.to_dict())
    response.status_code = 201
    response.headers["Location"] = url_for(".get_order", order_id=order.id)
    return response


@api.get('/orders/<id(name="order_id"):order_id>')
@admin_required
def get_order(order_id: int):
    order = db.session.get(Order, order_id)
    if order is None:
        return _error(404, f"no order {order_id}")
    return jsonify(ledger.order_dict(order))


@api.get("/orders")
@admin_required
def list_orders():
    status = _choice("status", ORDER_STATUSES)
    query = db.select(Order).order_by(Order.id.desc()).limit(_limit())
    if status:
        query = query.where(Order.status == status)
    return jsonify(orders=ledger.order_dicts(db.session.execute(query).scalars().all()))


# ----- admin pages -------------------------------------------------------------------------

def _admin_page():
    if not is_admin():
        return redirect(url_for("auth.login"))
    return None


def china_day_start(days_ago: int = 0) -> datetime:
    """Midnight in China `days_ago` days back, as naive UTC."""
    today = datetime.now(CHINA).date() - timedelta(days=days_ago)
    return datetime.combine(today, time(), CHINA).astimezone(timezone.utc).replace(tzinfo=None)


@pages.get("/payments")
def payments_page():
    """The ledger with filters, today's and 7 days' income, and the notices not booked."""
    if (login := _admin_page()) is not None:
        return login
    rows = db.session.execute(payments_query().order_by(Payment.id.desc()).limit(500)).scalars().all()
    notices = db.session.execute(
        db.select(PaymentNotice).where(PaymentNotice.status != ACCEPTED)
        .order_by(PaymentNotice.id.desc()).limit(100)).scalars().all()
    return render_template("payments.html", admin=True, payments=rows, notices=notices,
                           today=ledger.income_since(china_day_start(0)),
                           week=ledger.income_since(china_day_start(6)),
                           statuses=PAYMENT_STATUSES, args=request.args, filters=filter_args(), money=amount_to_str,
                           local=display_time.shown)


@pages.get("/payments.csv")
def payments_csv():
    """The filtered ledger as CSV (UTF-8 with BOM, so Excel reads the Chinese notes)."""
    if (login := _admin_page()) is not None:
        return login
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["tx_id", "amount", "note", "status", "received_at", "recorded_at", "order_id", "claimed_by"])
    for p in db.session.execute(payments_query().order_by(Payment.id)).scalars():
        writer.writerow([p.tx_id, amount_to_str(p.amount_cents), _csv_safe(p.note), p.status,
                         isoformat(p.received_at), isoformat(p.recorded_at), p.order_id or "", _csv_safe(p.claimed_by or "")])
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=payments-{stamp}.csv"})


def _csv_safe(text: str) -> str:
    """Payers write the note: keep a spreadsheet from running it as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@pages.get("/orders")
def orders_page():
    if (login := _admin_page()) is not None:
        return login
    status = _choice("status", ORDER_STATUSES)
    query = db.select(Order).order_by(Order.id.desc()).limit(500)
    if status:
        query = query.where(Order.status == status)
    return render_template("orders.html", admin=True, orders=db.session.execute(query).scalars().all(),
                           statuses=ORDER_STATUSES, args=request.args, money=amount_to_str, local=display_time.shown)
