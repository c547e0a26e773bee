"""Orders, matching, manual claims, expiry and the callback events they cause.

Every state change is a conditional UPDATE (`... WHERE status = 'pending'`) whose row count says
who won, so several processes (or threads) on one database credit an order once without locks.
Callback events are queued in the outbox inside the same transaction as the change they report.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import BigInteger, bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from .. import outbox
from ..db import db, isoformat, utcnow
from .models import CLAIMED, CODE_LENGTH, EXPIRED, MATCHED, PAID, PENDING, UNCLAIMED, Order, Payment, new_code
from .parser import to_cents

logger = logging.getLogger(__name__)

SECRET_KEY_NAME = "PAYMENT_CALLBACK_SECRET"
# Notes are short; a longer one is scanned only this far for an order code.
MAX_NOTE_SCAN = 256
_NOTE_NOISE = re.compile(r"[\s\-_·.,:：，。]+")
# What each receipt runs, built once (see recorder.py).
_orders, _payments = Order.__table__, Payment.__table__
_MATCHING_ORDERS = (_orders.select().where(_orders.c.code.in_(bindparam("codes", expanding=True)),
                                           _orders.c.status == PENDING,
                                           _orders.c.amount_cents == bindparam("amount_cents"),
                                           _orders.c.expires_at >= bindparam("received_at")).order_by(_orders.c.id))
_PAY_ORDER = (update(_orders).where(_orders.c.id == bindparam("order_id"), _orders.c.status == PENDING)
              .values(status=PAID, payment_id=bindparam("paid_with"), paid_at=bindparam("paid_at")))
_MATCH_PAYMENT = (update(_payments).where(_payments.c.id == bindparam("payment_id"))
                  .values(status=MATCHED, order_id=bindparam("matched_order")))


class ClaimRefused(Exception):
    """A claim that cannot be made; `status` is the HTTP status that says why (404, 409)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ----- amounts -----------------------------------------------------------------------------

def parse_amount(value) -> int:
    """Decimal text in yuan ("12.00", "0.5") as integer cents; ValueError otherwise.

    Numbers are refused: 12 could mean yuan or cents, and 0.1 is not exact in JSON floats.
    """
    if not isinstance(value, str):
        raise ValueError("amount must be a decimal string in yuan such as \"12.00\"")
    try:
        return to_cents(value.strip())
    except ValueError as e:
        raise ValueError(f"{e}: amount must be a decimal string in yuan such as \"12.00\"") from None


# ----- events ------------------------------------------------------------------------------

def emit(event_type: str, key: str, data: dict) -> None:
    """Queue a signed callback event in the caller's transaction (no-op without a callback URL)."""
    outbox.emit_event(event_type, key, data, url=current_app.config.get("PAYMENT_CALLBACK_URL"),
                      sign_with=SECRET_KEY_NAME)


def emit_order(event_type: str, order: Order, payment: Payment | None = None) -> None:
    emit(event_type, f"{event_type}:{order.id}", {"order": order_dict(order, payment)})


def order_dict(order: Order, payment: Payment | None = None) -> dict:
    """The order as the API and the callbacks show it: with its payment, once paid."""
    if payment is None and order.payment_id:
        payment = db.session.get(Payment, order.payment_id)
    return order.to_dict(payment)


def order_dicts(orders: list[Order]) -> list[dict]:
    """order_dict for many orders, their payments loaded in one query."""
    ids = [o.payment_id for o in orders if o.payment_id]
    if ids:  # into the identity map, where order_dict's session.get finds them without a query
        db.session.execute(db.select(Payment).where(Payment.id.in_(ids))).scalars().all()
    return [order_dict(o) for o in orders]


# ----- orders ------------------------------------------------------------------------------

def create_order(amount_cents: int, reference: str, ttl_seconds: float) -> Order:
    """A pending order with a fresh code (commits)."""
    for _ in range(10):
        order = Order(code=new_code(), amount_cents=amount_cents, reference=reference, status=PENDING,
                      created_at=utcnow(), expires_at=utcnow() + timedelta(seconds=ttl_seconds))
        db.session.add(order)
        try:
            db.session.commit()
            return order
        except IntegrityError:  # the code is taken: draw another
            db.session.rollback()
    raise RuntimeError("could not draw a free order code")


def normalize_note(note: str) -> str:
    """Upper-case, full-width folded, separators removed: "ord-7f3k 9a" -> "ORD7F3K9A"."""
    return _NOTE_NOISE.sub("", unicodedata.normalize("NFKC", note or "")).upper()


def match_order(payment: Payment) -> Order | None:
    """Mark the pending order whose code is in the note and whose amount is the payment's as paid.

    Runs inside the caller's transaction (the one that inserted the payment, with a statement:
    `payment` is the row as written, outside the session), and records the match in both; the
    order returned is the row as updated, outside the session too.
    """
    text = normalize_note(payment.note)[:MAX_NOTE_SCAN]
    # Every code-long piece of the note: one indexed lookup, however many orders are pending.
    pieces = {text[i:i + CODE_LENGTH] for i in range(len(text) - CODE_LENGTH + 1)}
    if not pieces:
        return None
    rows = db.session.connection().execute(_MATCHING_ORDERS, {
        "codes": sorted(pieces), "received_at": payment.received_at, "amount_cents": payment.amount_cents,
    }).mappings().all()
    for order in (Order(**row) for row in rows):   # as read, outside the session (like `payment`)
        if _mark_paid(order, payment):
            db.session.connection().execute(_MATCH_PAYMENT, {"payment_id": payment.id, "matched_order": order.id})
            payment.status, payment.order_id = MATCHED, order.id
            return order
    return None


def _mark_paid(order: Order, payment: Payment) -> bool:
    """Conditional UPDATE: True only for the one caller that moved the order from pending to paid."""
    paid_at = utcnow()
    result = db.session.connection().execute(_PAY_ORDER, {"order_id": order.id, "paid_with": payment.id,
                                                          "paid_at": paid_at})
    if result.rowcount != 1:
        return False
    # What the UPDATE wrote, without a reload and without marking the object dirty.
    for key, value in (("status", PAID), ("payment_id", payment.id), ("paid_at", paid_at)):
        set_committed_value(order, key, value)
    return True


def claim(tx_id: str, claimed_by: str, order_id: int | None = None) -> tuple[Payment, Order | None]:
    """Claim an unclaimed payment by hand, optionally paying an order with it (commits)."""
    payment = db.session.execute(db.select(Payment).where(Payment.tx_id == tx_id)).scalar_one_or_none()
    if payment is None:
        raise ClaimRefused(404, f"no payment with transaction id {tx_id}")
    result = db.session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.status == UNCLAIMED)
        .values(status=CLAIMED, claimed_at=utcnow(), claimed_by=claimed_by, order_id=order_id),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        db.session.rollback()
        db.session.refresh(payment)
        raise ClaimRefused(409, _already(payment))
    db.session.refresh(payment)
    order = None
    if order_id is not None:
        order = db.session.get(Order, order_id)
        problem = _order_problem(order, payment)
        if problem or not _mark_paid(order, payment):
            db.session.rollback()
            raise ClaimRefused(409 if order is not None else 404, problem or f"order {order_id} is no longer pending")
        emit_order("order.paid", order, payment)
    db.session.commit()
    db.session.refresh(payment)
    return payment, order


def _already(payment: Payment) -> str:
    if payment.status == MATCHED:
        return f"payment {payment.tx_id} was already credited to order {payment.order_id} automatically"
    return (f"payment {payment.tx_id} was already claimed at {isoformat(payment.claimed_at)}"
            f" by {payment.claimed_by or 'someone'}")


def _order_problem(order: Order | None, payment: Payment) -> str | None:
    if order is None:
        return "no such order"
    if order.status != PENDING:
        return f"order {order.id} is {order.status}, not pending"
    if order.amount_cents != payment.amount_cents:
        return f"order {order.id} is for a different amount than payment {payment.tx_id}"
    return None


def expire_orders(app, limit: int = 200) -> int:
    """Periodic job: pending orders past their expiry (plus grace) become expired; return how many."""
    expired = 0
    with app.app_context():
        grace = timedelta(seconds=app.config["ORDER_EXPIRY_GRACE_SECONDS"])
        due = db.session.execute(
            db.select(Order.id).where(Order.status == PENDING, Order.expires_at <= utcnow() - grace)
            .order_by(Order.id).limit(limit)).scalars().all()
        db.session.commit()
        for order_id in due:
            result = db.session.execute(
                update(Order).where(Order.id == order_id, Order.status == PENDING).values(status=EXPIRED),
                execution_options={"synchronize_session": False},
            )
            if result.rowcount == 1:
                emit_order("order.expired", db.session.get(Order, order_id, populate_existing=True))
                expired += 1
            db.session.commit()
    if expired:
        logger.info("%d orders expired", expired)
    return expired


@dataclass(frozen=True)
class Income:
    count: int
    cents: int


def income_since(moment) -> Income:
    """Accepted payments received since `moment` (naive UTC)."""
    count, cents = db.session.execute(
        # SUM of a BIGINT is NUMERIC on PostgreSQL: cast back to whole cents.
        db.select(db.func.count(Payment.id),
                  db.cast(db.func.coalesce(db.func.sum(Payment.amount_cents), 0), BigInteger))
        .where(Payment.received_at >= moment)).one()
    return Income(count, cents)

