"""Storing and listing messages: inbound ones before the handlers see them, outbound ones before
the API answers 202, each with its callback event queued in the same transaction."""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError

from .. import outbox
from ..db import db, store_patiently, utcnow
from .models import IN, MAX_CONTACT, OUT, QUEUED, RECEIVED, Message

logger = logging.getLogger(__name__)

SECRET_KEY_NAME = "MESSAGE_CALLBACK_SECRET"
# pg_advisory_xact_lock key under which message rows are inserted one transaction at a time.
_PG_INSERT_LOCK = 0x6765656B6D7367


def record_incoming(app, message) -> int | None:
    """The supervisor's recorder: store a received message (commits) before any handler runs.

    Returns the row id, or None for a redelivery of a message stored already. A locked database
    is waited out (geekai/db.py store_patiently); past that the error goes to the supervisor.
    """
    with app.app_context():
        return store_patiently(lambda: _store_incoming(message), f"message {message.id}")


def _store_incoming(message) -> int | None:
    _insert_in_order()
    row = Message(direction=IN, status=RECEIVED, contact=_clean(message.contact_id)[:MAX_CONTACT],
                  contact_name=_clean(message.sender_name)[:MAX_CONTACT], text=_clean(message.text),
                  type=_clean(message.type)[:32] or "Text", msg_id=_clean(message.id)[:80] or None,
                  attempts=0, error="", created_at=utcnow())
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # the same message again (a hot login's resync, a repeated batch)
        db.session.rollback()
        return None
    row_id = row.id
    emit("message.received", row)
    db.session.commit()
    logger.info("message %s from %r stored", row_id, row.contact)
    return row_id


def queue_outgoing(to: str, text: str, key: str | None) -> tuple[Message, bool]:
    """Store an outbound text as queued (commits); (message, True), or (the first message with
    this key, False) when the key was used already."""
    first = by_key(key) if key is not None else None
    name = _last_name(to) if first is None else ""
    db.session.commit()  # end the reads before the write (a SQLite snapshot cannot be upgraded)
    if first is not None:
        return first, False
    now = utcnow()
    _insert_in_order()
    row = Message(direction=OUT, status=QUEUED, contact=to, contact_name=name, text=text,
                  type="Text", idempotency_key=key, attempts=0, next_attempt_at=now, error="",
                  created_at=now)
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent request with the same key stored it first
        db.session.rollback()
        first = by_key(key) if key is not None else None
        if first is None:
            raise
        return first, False
    logger.info("message %s to %r queued", row.id, to)
    return row, True


def by_key(key: str) -> Message | None:
    return db.session.execute(db.select(Message).where(Message.idempotency_key == key)).scalar_one_or_none()


def emit(event_type: str, message: Message) -> None:
    """Queue a signed message.* event for MESSAGE_CALLBACK_URL in the caller's transaction."""
    outbox.emit_event(event_type, f"{event_type}:{message.id}", {"message": message.to_dict()},
                      url=current_app.config.get("MESSAGE_CALLBACK_URL"), sign_with=SECRET_KEY_NAME)


def listing(*, direction: str | None = None, status: str | None = None, contact: str | None = None,
            after_id: int | None = None, before_id: int | None = None, limit: int = 100,
            newest: bool = False) -> list[Message]:
    """Messages filtered, oldest first after `after_id` (or newest first with `newest`), at most
    `limit` + 1 of them (the extra one says there are more)."""
    query = db.select(Message)
    if direction:
        query = query.where(Message.direction == direction)
    if status:
        query = query.where(Message.status == status)
    if contact is not None:
        query = query.where(Message.contact == contact)
    if after_id is not None:
        query = query.where(Message.id > after_id)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    order = Message.id.desc() if newest else Message.id
    return db.session.execute(query.order_by(order).limit(limit + 1)).scalars().all()


def _insert_in_order() -> None:
    """Make ids commit in the order they are handed out, so a reader whose cursor is the last id
    it saw can never skip a row that commits later with a smaller id.

    SQLite has one writer at a time, and a row's id is given inside the writer's transaction.
    PostgreSQL hands sequence numbers to concurrent transactions that may commit in another order:
    inserts take turns here until their transaction ends.
    """
    if db.session.get_bind(mapper=Message).dialect.name == "postgresql":
        db.session.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_INSERT_LOCK})


def _last_name(contact: str) -> str:
    """The display name of the contact's latest received message, for the page."""
    return db.session.execute(
        db.select(Message.contact_name).where(Message.direction == IN, Message.status == RECEIVED,
                                              Message.contact == contact)
        .order_by(Message.id.desc()).limit(1)).scalar() or ""


def _clean(value) -> str:
    """Text as a database stores it (PostgreSQL refuses NUL characters in text)."""
    return str(value or "").replace("\x00", "")
