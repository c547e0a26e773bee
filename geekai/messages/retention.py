"""Retention: messages older than MESSAGE_RETENTION_DAYS are deleted by a periodic job.

It touches two things only: rows of the message table, and the delivered or failed outbox rows of
message.* callbacks (their payload is a copy of the text). A queued message is never deleted
unsent, and nothing of payments (notices, the ledger, orders, their callbacks) is ever touched.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete

from ..db import db, utcnow
from ..outbox import PENDING, OutboxMessage
from .models import QUEUED, Message

logger = logging.getLogger(__name__)

JOB_ID = "messages-retention"
BATCH = 500
EVENT_TOPIC_PREFIX = "message."


def purge(app) -> int:
    """Delete what is older than the retention period (commits in batches); return messages deleted."""
    days = app.config["MESSAGE_RETENTION_DAYS"]
    if not days:
        return 0
    cutoff = utcnow() - timedelta(days=days)
    with app.app_context():
        deleted = _in_batches(db.select(Message.id).where(Message.created_at < cutoff, Message.status != QUEUED),
                              Message)
        events = _in_batches(db.select(OutboxMessage.id).where(
            OutboxMessage.topic.startswith(EVENT_TOPIC_PREFIX), OutboxMessage.status != PENDING,
            OutboxMessage.created_at < cutoff), OutboxMessage)
    if deleted or events:
        logger.info("retention: deleted %d messages and %d message callbacks older than %s days",
                    deleted, events, days)
    return deleted


def _in_batches(ids_query, model) -> int:
    """Delete the rows whose ids the query selects, BATCH at a time, each batch its own commit
    (a long delete would hold SQLite's write lock against the bot and the web)."""
    total = 0
    while True:
        ids = list(db.session.execute(ids_query.limit(BATCH)).scalars())
        if not ids:
            db.session.commit()
            return total
        db.session.execute(delete(model).where(model.id.in_(ids)), execution_options={"synchronize_session": False})
        db.session.commit()
        total += len(ids)
