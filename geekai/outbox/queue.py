"""The outbox's queue: the table, producing, claiming, the outcome and the retry (geekai/outbox).

Producers call `enqueue` inside their own transaction, so a message exists exactly when the rows
that caused it exist. A periodic job (`deliver_due`) sends what is due; failures retry with capped
exponential backoff and jitter, and after OUTBOX_MAX_ATTEMPTS a message is `failed` (shown to the
admin, retryable by hand). Delivery is at least once: every request carries the message's
idempotency key (`Idempotency-Key` header, or the mail's Message-ID) so receivers can drop repeats.

Several processes may run `deliver_due` on the same database: each message is claimed with a
conditional UPDATE that pushes its next_attempt_at forward by a lease, and only the claimer (by a
random claim token) may record the outcome.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, String, Text, and_, or_, update
from sqlalchemy.orm import Mapped, mapped_column

from ..backoff import delay as backoff_delay
from ..db import db, isoformat, utcnow
from ..redaction import redact, redact_text

logger = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
TRANSPORTS = ("http", "smtp")
# Settings (OUTBOX_*) and their defaults: geekai/config.py.
MAX_ERROR_CHARS = 500
JOB_ID = "outbox-deliver"


class OutboxMessage(db.Model):
    """One message to deliver; rows are kept after delivery as the delivery log."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # Name of the config key holding an HMAC secret (never the secret): signed at send time, so
    # the timestamp is fresh on every attempt and a secret rotation applies to queued messages.
    sign_with: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def retryable(self) -> bool:
        """Failed, or pending and not being sent right now (the page's Retry button; see retry())."""
        return self.status == FAILED or (self.status == PENDING and (
            self.claim_token is None or self.next_attempt_at <= utcnow()))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "topic": self.topic,
            "transport": self.transport,
            "target": redact(self.target),
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": isoformat(self.next_attempt_at) if self.status == PENDING else None,
            "last_error": redact_text(self.last_error, self.target),
            "created_at": isoformat(self.created_at),
            "delivered_at": isoformat(self.delivered_at),
        }


class DeliveryError(Exception):
    """A send that did not succeed; the message says why (stored as last_error)."""


# ----- producing ---------------------------------------------------------------------------

def enqueue(topic: str, transport: str, target: str, payload: dict | str, *, key: str,
            headers: dict | None = None, sign_with: str | None = None) -> OutboxMessage | None:
    """Add a message in the caller's transaction (the caller commits); the message, or None when
    `key` was already queued.

    dict payloads are sent as JSON. `sign_with` names a config key whose value signs the body
    (HMAC-SHA256 over "<timestamp>.<body>") at send time.
    """
    if not queue_message(topic, transport, target, payload, key=key, headers=headers, sign_with=sign_with):
        return None
    return db.session.execute(db.select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).scalar_one()


def queue_message(topic: str, transport: str, target: str, payload: dict | str, *, key: str,
                  headers: dict | None = None, sign_with: str | None = None) -> bool:
    """enqueue() for a producer that needs no row back (each payment receipt): True when queued,
    False when `key` was already."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    if not key:
        raise ValueError("an idempotency key is required")
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    now = utcnow()
    values = dict(topic=topic, transport=transport, target=target, payload=body,
                  headers=json.dumps(headers or {}, ensure_ascii=False), idempotency_key=key,
                  sign_with=sign_with, status=PENDING, attempts=0, next_attempt_at=now,
                  last_error="", created_at=now, claim_token=None, delivered_at=None)
    dialect = db.session.get_bind(mapper=OutboxMessage).dialect.name
    if dialect not in ("sqlite", "postgresql"):
        if db.session.execute(db.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)).first():
            return False
        db.session.add(OutboxMessage(**values))
        db.session.flush()
        return True
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent producer of the same key can neither make
    # this raise nor roll back the caller's rows.
    connection = db.session.connection()
    returning = connection.dialect.insert_returning   # rowcount is not reliable with PostgreSQL's drivers
    result = connection.execute(_insert_once(dialect, returning), values)
    return result.first() is not None if returning else result.rowcount == 1


_INSERTS: dict = {}


def _insert_once(dialect: str, returning: bool):
    """The INSERT ... ON CONFLICT DO NOTHING of `queue_message`, built once per dialect (the values are its
    parameters): building it for each message cost more than running it."""
    if (dialect, returning) not in _INSERTS:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        table = OutboxMessage.__table__
        insert = dialect_insert(table).on_conflict_do_nothing(index_elements=["idempotency_key"])
        _INSERTS[dialect, returning] = insert.returning(table.c.id) if returning else insert
    return _INSERTS[dialect, returning]


def emit_event(event_type: str, key: str, data: dict, *, url: str | None, sign_with: str) -> None:
    """Queue a signed callback event in the caller's transaction (no-op without a URL).

    The body is {"id": key, "type", "created_at", "data"}; `key` is also its Idempotency-Key.
    """
    if not url:
        return
    body = {"id": key, "type": event_type, "created_at": isoformat(utcnow()), "data": data}
    queue_message(event_type, "http", url, body, key=key, sign_with=sign_with)


def retry(message_id: int) -> bool:
    """Make a failed or waiting message due now (commits).

    False if it is missing, delivered, or being sent right now: a worker holds its claim (lease
    not expired). Clearing that claim would make the worker's outcome a no-op and let another
    round send the message a second time.
    """
    now = utcnow()
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id,
               or_(OutboxMessage.status == FAILED,
                   and_(OutboxMessage.status == PENDING,
                        or_(OutboxMessage.claim_token.is_(None), OutboxMessage.next_attempt_at <= now))))
        .values(status=PENDING, next_attempt_at=now, claim_token=None),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return result.rowcount == 1


# ----- delivering --------------------------------------------------------------------------

def deliver_due(app, limit: int = 50) -> int:
    """Send up to `limit` due messages; return how many were delivered."""
    delivered = 0
    with app.app_context():
        failing_targets: set[str] = set()
        for message_id, target in _due(limit):
            if target in failing_targets:
                # Its receiver just failed and its messages were postponed with the failed one.
                continue
            message = _claim(app, message_id)
            if message is None:
                continue
            if _attempt(app, message):
                delivered += 1
            else:
                failing_targets.add(message.target)
    return delivered


def _due(limit: int) -> list[tuple[int, str]]:
    """(id, target) of the first `limit` due messages, oldest first."""
    query = (db.select(OutboxMessage.id, OutboxMessage.target)
             .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= utcnow())
             .order_by(OutboxMessage.id).limit(limit))
    due = [(row.id, row.target) for row in db.session.execute(query)]
    db.session.commit()  # end the read before the first write (SQLite snapshot upgrades can fail)
    return due


def _claim(app, message_id: int) -> OutboxMessage | None:
    """Claim one due message for the length of a lease; None if another worker has it."""
    now = utcnow()
    token = secrets.token_hex(16)
    lease = timedelta(seconds=app.config["OUTBOX_TIMEOUT_SECONDS"] * 3 + 30)
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == PENDING,
               OutboxMessage.next_attempt_at <= now)
        .values(next_attempt_at=now + lease, claim_token=token),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    return message if message is not None and message.claim_token == token else None


def _attempt(app, message: OutboxMessage) -> bool:
    """Send one claimed message and record the outcome; True when delivered."""
    started = time.monotonic()
    try:
        send(app, message)
    except Exception as exc:  # DeliveryError, network errors, a bad target: all retryable
        error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        # Errors quote the URL they failed on: stored, shown and logged only without its secrets.
        _record_failure(app, message, redact_text(error, message.target)[:MAX_ERROR_CHARS])
        return False
    _finish(message, status=DELIVERED, attempts=message.attempts + 1, delivered_at=utcnow(),
            last_error="", claim_token=None)
    logger.info("outbox %s (%s) delivered in %.0f ms", message.id, message.topic, (time.monotonic() - started) * 1000)
    return True


def _record_failure(app, message: OutboxMessage, error: str) -> None:
    attempts = message.attempts + 1
    if attempts >= app.config["OUTBOX_MAX_ATTEMPTS"]:
        status, due = FAILED, utcnow()
        logger.warning("outbox %s (%s) failed after %d attempts: %s", message.id, message.topic, attempts, error)
    else:
        status, due = PENDING, utcnow() + timedelta(seconds=backoff(app, attempts))
        logger.info("outbox %s (%s) attempt %d failed, next at %s: %s", message.id, message.topic, attempts, due, error)
    _finish(message, status=status, attempts=attempts, next_attempt_at=due, last_error=error, claim_token=None)
    _postpone_target(message.target, due if status == PENDING else utcnow() + timedelta(seconds=backoff(app, attempts)))


def _postpone_target(target: str, until: datetime) -> None:
    """Its receiver failed: the target's other due messages wait as long as the failed one.

    Without this they would stay due at the front of the id-ordered window, and a few dozen
    messages to a dead receiver would starve every healthy one behind them. Claimed messages
    (next_attempt_at in the future, by their lease) are not touched.
    """
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target == target, OutboxMessage.status == PENDING,
               OutboxMessage.next_attempt_at <= utcnow())
        .values(next_attempt_at=until),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()


def _finish(message: OutboxMessage, **values) -> None:
    """Write an outcome, only if this worker still holds the claim."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.claim_token == message.claim_token)
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()


def backoff(app, attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: doubling, jittered, capped."""
    return backoff_delay(attempts, app.config["OUTBOX_RETRY_FIRST_SECONDS"], app.config["OUTBOX_RETRY_MAX_SECONDS"])


# transport -> send(app, message): registered by geekai/outbox/__init__.py (http_sender, smtp_sender).
SENDERS: dict = {}


def send(app, message: OutboxMessage) -> None:
    """Send one message by its transport; raise on anything but success."""
    sender = SENDERS.get(message.transport)
    if sender is None:
        raise DeliveryError(f"unknown transport {message.transport!r}")
    sender(app, message)


def init_app(app) -> None:
    """Register the delivery job (several modules call this; register_job keeps one per id)."""
    from ..jobs import register_job
    register_job(app, JOB_ID, deliver_due, app.config["OUTBOX_INTERVAL_SECONDS"])
