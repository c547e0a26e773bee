"""Incidents: a period when the bot needs a person's attention, from opening to recovery."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db, isoformat, utcnow

# Why an incident opened.
DOWN = "down"                # left logged_in without an admin and not back within the grace time
NEEDS_LOGIN = "needs_login"  # the bot waits for a person to scan
ERROR = "error"              # a permanent failure
FLAPPING = "flapping"        # repeated watchdog restarts


class Incident(db.Model):
    """One incident; at most one is open (closed_at NULL) at a time."""

    __tablename__ = "alert_incident"
    __table_args__ = (Index("ix_alert_incident_open", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the trouble began (the bot left logged_in, or entered the failing state).
    began_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(32))      # the bot's state, kept current while open
    reason: Mapped[str] = mapped_column(Text, default="")
    last_notice_at: Mapped[datetime] = mapped_column(default=utcnow)
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    close_reason: Mapped[str] = mapped_column(Text, default="")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "open": self.closed_at is None,
            "began_at": isoformat(self.began_at),
            "opened_at": isoformat(self.opened_at),
            "closed_at": isoformat(self.closed_at),
            "state": self.state,
            "reason": self.reason,
            "reminders": self.reminders,
            "close_reason": self.close_reason,
        }


class AlertDelivery(db.Model):
    """Which incident (and which of its notices) an alert message in the outbox belongs to.

    One row per outbox message an alert queued; `incident_id` is None for a one-off notice (a test,
    a forged payment). So the page and the API find an incident's deliveries by this column, never
    by taking the outbox's idempotency keys apart.
    """

    __tablename__ = "alert_delivery"
    __table_args__ = (Index("ix_alert_delivery_incident", "incident_id"),)

    outbox_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    incident_id: Mapped[int | None] = mapped_column(Integer, default=None)
    notice: Mapped[str] = mapped_column(String(32))   # opened, reminderN, resolved; test, forged_payment
    channel: Mapped[str] = mapped_column(String(32))  # webhook, wecom, dingtalk, feishu, email
