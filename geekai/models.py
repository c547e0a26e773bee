"""Database models: the bot's current state (one row), its append-only history, the lease that says
which process runs it, the commands other processes hand to that one, and what the iLink backend
keeps across restarts (its getupdates cursor, the messages it handed over, each person's last
context_token)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, LargeBinary, String, Text, and_, or_
from sqlalchemy.orm import Mapped, mapped_column

from .db import db, isoformat, utcnow
from .states import Actor, State

STATE_ROW_ID = 1


class BotState(db.Model):
    """The bot's state as the page shows it; exactly one row (id 1)."""

    __tablename__ = "bot_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(default=None)
    qr_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    qr_png: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    account: Mapped[str | None] = mapped_column(String(200), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # iLink's login asks for the number the phone shows: "required", "checking" (an admin entered
    # one) or "wrong"; None when no code is involved. Last, where the migration adds it.
    verify_code: Mapped[str | None] = mapped_column(String(16), default=None)

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "since": isoformat(self.since),
            "reason": self.reason,
            "detail": self.detail,
            "attempt": self.attempt,
            "next_retry_at": isoformat(self.next_retry_at),
            "qr_expires_at": isoformat(self.qr_expires_at),
            "account": self.account,
            "verify_code_required": self.verify_code in ("required", "wrong"),
            "verify_code": self.verify_code,
        }


class BotEvent(db.Model):
    """One state transition; rows are only ever appended."""

    __tablename__ = "bot_event"
    # (to_state, id): the alert rules look up the last arrival in logged_in every few seconds.
    __table_args__ = (Index("ix_bot_event_at", "at"), Index("ix_bot_event_to_state_id", "to_state", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64), default="bot")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "at": isoformat(self.at),
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
            "detail": self.detail,
            "actor": self.actor,
        }


class BotLease(db.Model):
    """Which process runs the bot: one row (id 1). Its holder renews it; another process takes
    over only once it has expired (or its holder is known dead), with the epoch one higher."""

    __tablename__ = "bot_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))     # "host:pid:token" of the holder
    epoch: Mapped[int] = mapped_column(Integer)         # +1 at each change of holder (fencing)
    expires_at: Mapped[datetime] = mapped_column()
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime] = mapped_column(default=utcnow)
    released: Mapped[bool] = mapped_column(Boolean, default=False)   # given up at a clean shutdown


class BotCommand(db.Model):
    """An admin's command (log in, stop, ...) taken by a process that does not run the bot, for
    the one that does; rows are kept as a log."""

    __tablename__ = "bot_command"
    __table_args__ = (Index("ix_bot_command_pending", "done_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    args: Mapped[str] = mapped_column(Text, default="{}")   # JSON
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    result: Mapped[str] = mapped_column(Text, default="")   # JSON: {"status": 202, ...}


# SQL: a watchdog restart, i.e. the bot was taken out of logged_in because it stopped syncing.
WATCHDOG_RESTART = and_(BotEvent.from_state == State.LOGGED_IN,
                        or_(BotEvent.actor == Actor.WATCHDOG, BotEvent.reason.startswith("watchdog:")))


class IlinkSync(db.Model):
    """Where the iLink bot's getupdates stopped (one row, id 1): a restart resumes from here."""

    __tablename__ = "ilink_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(200), default="")
    cursor: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IlinkSeenMessage(db.Model):
    """An iLink message already handed to the handlers: a redelivery of it is dropped."""

    __tablename__ = "ilink_seen_message"
    __table_args__ = (Index("ix_ilink_seen_message_seen_at", "seen_at"),)

    # uint64 as decimal text (never a float), or the fallback id of a message without one.
    message_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class IlinkContact(db.Model):
    """A person who wrote to the iLink bot: the context_token of their last message, which a
    reply must carry, and when that message came (replies are refused after about 24 h)."""

    __tablename__ = "ilink_contact"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    context_token: Mapped[str] = mapped_column(Text)
    last_message_at: Mapped[datetime] = mapped_column()
