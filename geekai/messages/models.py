"""The message table: every text the bot received, and every text the main application queued."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db, isoformat, utcnow

IN, OUT = "in", "out"
DIRECTIONS = (IN, OUT)
# Inbound messages are `received`; outbound ones go `queued` -> `sent` | `failed`.
RECEIVED, QUEUED, SENT, FAILED = "received", "queued", "sent", "failed"
OUT_STATUSES = (QUEUED, SENT, FAILED)
STATUSES = (RECEIVED,) + OUT_STATUSES
MAX_CONTACT = 200
MAX_KEY = 200


class Message(db.Model):
    """One message in or out. Outbound rows are the durable send queue."""

    __tablename__ = "message"
    __table_args__ = (
        # The send queue's lookup: the oldest queued message of each contact.
        Index("ix_message_queue", "direction", "status", "contact", "id"),
        Index("ix_message_direction_id", "direction", "id"),
        Index("ix_message_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    # The contact id the feed shows and POST /api/messages accepts (see docs/messages.md).
    contact: Mapped[str] = mapped_column(String(MAX_CONTACT), default="")
    contact_name: Mapped[str] = mapped_column(String(MAX_CONTACT), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(32), default="Text")
    status: Mapped[str] = mapped_column(String(16))
    # The application's idempotency key of an outbound message.
    idempotency_key: Mapped[str | None] = mapped_column(String(MAX_KEY), unique=True, default=None)
    # The protocol's id of an inbound message: a redelivery of it is not stored twice.
    msg_id: Mapped[str | None] = mapped_column(String(80), unique=True, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set while a send is in flight: the sender's token, and when its claim lapses.
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "direction": self.direction,
            "contact": self.contact,
            "contact_name": self.contact_name,
            "text": self.text,
            "type": self.type,
            "status": self.status,
            "key": self.idempotency_key,
            "attempts": self.attempts,
            "next_attempt_at": isoformat(self.next_attempt_at) if self.status == QUEUED else None,
            "error": self.error,
            "created_at": isoformat(self.created_at),
            "sent_at": isoformat(self.sent_at),
        }
