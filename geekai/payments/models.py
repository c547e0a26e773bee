"""Payment tables: every incoming notice as received, the ledger of accepted receipts, orders."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db, isoformat, utcnow
from .parser import amount_to_str

# Notice statuses. `received`: stored, not yet processed (a crash left it so: reprocessed later).
RECEIVED, ACCEPTED, DUPLICATE, REJECTED, IGNORED, UNPARSED = (
    "received", "accepted", "duplicate", "rejected", "ignored", "unparsed")
NOTICE_STATUSES = (RECEIVED, ACCEPTED, DUPLICATE, REJECTED, IGNORED, UNPARSED)
# Payment (ledger) statuses: not yet credited to anything, credited to an order, claimed by hand.
UNCLAIMED, MATCHED, CLAIMED = "unclaimed", "matched", "claimed"
PAYMENT_STATUSES = (UNCLAIMED, MATCHED, CLAIMED)
# Order statuses.
PENDING, PAID, EXPIRED = "pending", "paid", "expired"
ORDER_STATUSES = (PENDING, PAID, EXPIRED)

# No 0/O, 1/I/L: a payer copies the code by eye into the note. 31**6 is about 9e8 codes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class PaymentNotice(db.Model):
    """One app message that looked like a payment notice, stored before it is even parsed.

    Rejected (forged sender), ignored (refunds, service notices), unparsed and duplicate notices
    stay here with their reason; only accepted ones have a ledger row, so none of them can block
    or replace a genuine receipt.
    """

    __tablename__ = "payment_notice"
    __table_args__ = (Index("ix_payment_notice_status_stored", "status", "stored_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # WeChat's NewMsgId: a redelivery of the same message (hot reload, repeated sync) is one row.
    msg_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    msg_type: Mapped[int | None] = mapped_column(Integer, default=None)
    sender: Mapped[str] = mapped_column(String(200), default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    sender_verify_flag: Mapped[int | None] = mapped_column(Integer, default=None)
    content: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[int | None] = mapped_column(Integer, default=None)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=RECEIVED)
    reason: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text, default="")
    tx_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"), default=None)

    def to_dict(self, with_content: bool = False) -> dict:
        data = {
            "id": self.id,
            "msg_id": self.msg_id,
            "status": self.status,
            "reason": self.reason,
            "sender": self.sender,
            "sender_name": self.sender_name,
            "sender_verify_flag": self.sender_verify_flag,
            "title": self.title,
            "tx_id": self.tx_id,
            "amount": None if self.amount_cents is None else amount_to_str(self.amount_cents),
            "note": self.note,
            "stored_at": isoformat(self.stored_at),
            "payment_id": self.payment_id,
        }
        if with_content:
            data["content"] = self.content
        return data


class Payment(db.Model):
    """The ledger: one row per accepted WeChat Pay transaction id."""

    __tablename__ = "payment"
    __table_args__ = (Index("ix_payment_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tx_id: Mapped[str] = mapped_column(String(128), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # 64-bit: Integer is 32-bit on PostgreSQL
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=UNCLAIMED)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)   # when WeChat says it was paid
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)   # when we stored it
    notice_id: Mapped[int] = mapped_column(Integer)                 # the PaymentNotice it came from
    msg_id: Mapped[str | None] = mapped_column(String(64), default=None)
    sender: Mapped[str] = mapped_column(String(200), default="")
    order_id: Mapped[int | None] = mapped_column(Integer, default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)

    def to_dict(self) -> dict:
        return {
            "tx_id": self.tx_id,
            "amount": amount_to_str(self.amount_cents),
            "amount_cents": self.amount_cents,
            "note": self.note,
            "status": self.status,
            "received_at": isoformat(self.received_at),
            "recorded_at": isoformat(self.recorded_at),
            "sender": self.sender,
            "order_id": self.order_id,
            "claimed_at": isoformat(self.claimed_at),
            "claimed_by": self.claimed_by,
            "id": self.id,
        }


class Order(db.Model):
    """Something the main application expects to be paid: an amount and a code for the note."""

    __tablename__ = "payment_order"
    __table_args__ = (Index("ix_payment_order_status_expires", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # 64-bit: Integer is 32-bit on PostgreSQL
    reference: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    # Unique: one payment can pay one order only, whatever races happen.
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"), unique=True, default=None)

    def to_dict(self, payment: Payment | None = None) -> dict:
        return {
            "id": self.id,
            "code": self.code,
            "status": self.status,
            "amount": amount_to_str(self.amount_cents),
            "reference": self.reference,
            "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at),
            "paid_at": isoformat(self.paid_at),
            "payment": payment.to_dict() if payment is not None else None,
        }
