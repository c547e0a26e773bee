"""The bot's message handler for WeChat Pay notices: store first, then check, parse and book.

Order of work for each app message that could be a payment notice:
1. store it as a PaymentNotice and commit (a crash after this loses nothing: notices left in
   `received` are processed again by `recover_notices`);
2. in one transaction: claim the notice (conditional UPDATE from `received`), check the sender,
   parse, insert the ledger row (the unique tx_id makes a redelivery a no-op), match an order,
   and queue the callback events.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta, timezone

from flask import current_app
from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from ..db import db, store_patiently, utcnow
from . import ledger
from .models import (ACCEPTED, DUPLICATE, IGNORED, RECEIVED, REJECTED, UNCLAIMED, UNPARSED, Payment,
                     PaymentNotice)
from .parser import PAYMENT_SENDER_NAMES, ParsedNotice, is_payment_sender, parse_notice

logger = logging.getLogger(__name__)

APP_MESSAGE = 49
# Words that make an app message from anyone worth keeping (as rejected, if not from WeChat Pay).
_RECEIPT_WORDS = ("收款", "到账", "微信支付")

# The statements of every receipt, built once: building them again per message was most of its cost.
_notices = PaymentNotice.__table__
_STORE_NOTICE = insert(_notices)
_CLAIM_NOTICE = (update(_notices)   # the SET columns are the parameters' names
                 .where(_notices.c.id == bindparam("notice_id"), _notices.c.status == RECEIVED))
_payments = Payment.__table__
_INSERT_PAYMENT = insert(_payments)


def handle_message(app, message) -> None:
    """The registered handler: record the message if it may be a payment notice."""
    if not may_be_notice(message):
        return
    with app.app_context():
        record(message)


def may_be_notice(message) -> bool:
    """App messages from WeChat Pay, or that name it or a receipt (forgeries included)."""
    raw = message.raw or {}
    if str(raw.get("MsgType")) != str(APP_MESSAGE):
        return False
    if is_payment_sender(message.sender_contact):
        return True
    name = str((message.sender_contact or {}).get("NickName") or message.sender_name or "")
    content = str(raw.get("Content") or "")
    return name.strip() in PAYMENT_SENDER_NAMES or any(word in content for word in _RECEIPT_WORDS)


@dataclass(frozen=True)
class StoredNotice:
    """What processing needs of a stored notice (kept in memory: no reload after the commit)."""

    id: int
    msg_id: str | None
    sender: str
    sender_name: str
    sender_verify_flag: int | None
    content: str
    create_time: int | None

    @classmethod
    def of(cls, row: PaymentNotice) -> "StoredNotice":
        return cls(row.id, row.msg_id, row.sender, row.sender_name, row.sender_verify_flag, row.content,
                   row.create_time)


def record(message) -> str | None:
    """Store and process one message; the notice's final status, None for a handled redelivery."""
    # A locked database is waited out: until stored, the notice exists only in memory.
    notice = store_patiently(lambda: store(message), f"payment notice {message.id}")
    return None if notice is None else process(notice)


def store(message) -> StoredNotice | None:
    """Commit the raw notice; for a redelivery, the earlier notice only if it is still unprocessed."""
    raw = message.raw or {}
    contact = message.sender_contact or {}
    values = dict(
        msg_id=str(message.id) if message.id else None,
        msg_type=_int(raw.get("MsgType")),
        sender=str(message.sender or contact.get("UserName") or "")[:200],
        sender_name=str(contact.get("NickName") or message.sender_name or "")[:200],
        sender_verify_flag=_int(contact.get("VerifyFlag")),
        content=str(raw.get("Content") or ""),
        create_time=_int(raw.get("CreateTime")),
        stored_at=utcnow(),
        status=RECEIVED,
        reason="", title="", note="",
    )
    try:
        notice_id = db.session.connection().execute(_STORE_NOTICE, values).inserted_primary_key[0]
        db.session.commit()
        return StoredNotice(notice_id, values["msg_id"], values["sender"], values["sender_name"],
                            values["sender_verify_flag"], values["content"], values["create_time"])
    except IntegrityError:  # the same WeChat message again (hot reload, repeated sync)
        db.session.rollback()
    earlier = db.session.execute(
        db.select(PaymentNotice).where(PaymentNotice.msg_id == values["msg_id"])).scalar_one_or_none()
    return StoredNotice.of(earlier) if earlier is not None and earlier.status == RECEIVED else None


def process(notice: StoredNotice) -> str | None:
    """Check, parse and book a stored notice once; its final status (None if another did it)."""
    contact = {"UserName": notice.sender, "NickName": notice.sender_name, "VerifyFlag": notice.sender_verify_flag}
    parsed = parse_notice(notice.content, notice.create_time)
    try:
        if not is_payment_sender(contact):
            reason = _forgery_reason(notice, parsed)
            status = _finish(notice, parsed, REJECTED, reason)
            if status:
                _alert_forgery(notice, reason)
            return status
        if parsed.kind == "ignored":
            return _finish(notice, parsed, IGNORED, parsed.reason)
        if parsed.kind != "receipt":
            return _finish(notice, parsed, UNPARSED, parsed.reason)
        return _book(notice, parsed)
    except Exception:
        db.session.rollback()
        logger.exception("payment notice %s could not be processed; it stays received for a retry", notice.id)
        return None


def _claim(notice: StoredNotice, parsed: ParsedNotice, status: str, reason: str, **extra) -> bool:
    """Move the notice out of `received` (conditional UPDATE): True for the one caller that did."""
    values = dict(status=status, reason=reason[:1000], title=parsed.title[:500], tx_id=parsed.tx_id,
                  amount_cents=parsed.amount_cents, note=parsed.note, notice_id=notice.id, **extra)
    return db.session.connection().execute(_CLAIM_NOTICE, values).rowcount == 1


def _finish(notice: StoredNotice, parsed: ParsedNotice, status: str, reason: str) -> str | None:
    if not _claim(notice, parsed, status, reason):
        db.session.rollback()
        return None
    db.session.commit()
    logger.info("payment notice %s %s: %s", notice.id, status, reason)
    return status


def _book(notice: StoredNotice, parsed: ParsedNotice) -> str | None:
    """Insert the ledger row, claim the notice, match an order, queue events: one transaction."""
    received_at = parsed.received_at.astimezone(timezone.utc).replace(tzinfo=None) if parsed.received_at else utcnow()
    values = dict(tx_id=parsed.tx_id, amount_cents=parsed.amount_cents, note=parsed.note, status=UNCLAIMED,
                  received_at=received_at, recorded_at=utcnow(), notice_id=notice.id, msg_id=notice.msg_id,
                  sender=notice.sender_name, order_id=None, claimed_at=None, claimed_by=None)
    try:
        payment_id = db.session.connection().execute(_INSERT_PAYMENT, values).inserted_primary_key[0]
    except IntegrityError:  # the unique tx_id: this transaction is already in the ledger
        db.session.rollback()
        return _duplicate(notice, parsed)
    if not _claim(notice, parsed, ACCEPTED, "", payment_id=payment_id):
        db.session.rollback()  # another worker processed this notice first
        return None
    payment = Payment(id=payment_id, **values)   # not in the session: the row is written already
    order = ledger.match_order(payment)
    ledger.emit("payment.received", f"payment.received:{payment.tx_id}", {"payment": payment.to_dict()})
    if order is not None:
        ledger.emit_order("order.paid", order, payment)
    db.session.commit()
    logger.info("payment %s of %s cents recorded%s", parsed.tx_id, parsed.amount_cents,
                f", order {order.id} paid" if order else "")
    return ACCEPTED


def _duplicate(notice: StoredNotice, parsed: ParsedNotice) -> str | None:
    """The transaction id is already in the ledger: keep this notice as a duplicate of it."""
    existing = db.session.execute(db.select(Payment).where(Payment.tx_id == parsed.tx_id)).scalar_one()
    reason = f"transaction {parsed.tx_id} already recorded (payment {existing.id})"
    if existing.amount_cents != parsed.amount_cents:
        reason += f"; amounts differ ({existing.amount_cents} vs {parsed.amount_cents} cents)"
    if not _claim(notice, parsed, DUPLICATE, reason, payment_id=existing.id):
        db.session.rollback()
        return None
    db.session.commit()
    return DUPLICATE


def _forgery_reason(notice: StoredNotice, parsed: ParsedNotice) -> str:
    what = "a receipt" if parsed.kind == "receipt" else f"a {parsed.kind} notice"
    return (f"{what} from {notice.sender_name or '?'} ({notice.sender or '?'}, VerifyFlag {notice.sender_verify_flag}),"
            " which is not WeChat's verified 微信支付/微信收款助手 official account")


def forgery_alert_key(notice: StoredNotice) -> str:
    """One alert per sender and hour: any contact can send forged notices as fast as it likes,
    and each is kept (rejected, on the payments page), but the ops chat hears of it once."""
    sender = notice.sender or notice.sender_name or "?"
    digest = hashlib.sha256(sender.encode("utf-8", "replace")).hexdigest()[:16]
    return f"forged-payment-{digest}-{utcnow():%Y%m%d%H}"


def _alert_forgery(notice: StoredNotice, reason: str) -> None:
    """Tell the operator that someone tried to fake a payment (`reason`: why it was rejected)."""
    logger.warning("rejected payment notice %s from %r (%s): not WeChat Pay's official account",
                   notice.id, notice.sender_name, notice.sender)
    from ..alerts.channels import FORGED_PAYMENT
    from ..alerts.notices import send_one_off

    try:
        send_one_off(FORGED_PAYMENT, f"notice {notice.id}: {reason}", forgery_alert_key(notice),
                     current_app.config)
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("could not queue the alert for forged payment notice %s", notice.id)


def recover_notices(app, min_age_seconds: float = 60, limit: int = 100) -> int:
    """Periodic job: process notices a crash or an error left in `received`; return how many."""
    done = 0
    with app.app_context():
        before = utcnow() - timedelta(seconds=min_age_seconds)
        # Copied before the commit, which expires the rows (reading them after would reload each).
        stuck = [StoredNotice.of(row) for row in db.session.execute(
            db.select(PaymentNotice).where(PaymentNotice.status == RECEIVED, PaymentNotice.stored_at <= before)
            .order_by(PaymentNotice.id).limit(limit)).scalars()]
        db.session.commit()
        for notice in stuck:
            done += process(notice) is not None
    return done


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

