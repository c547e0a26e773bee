"""A persistent outbox: messages to other systems (webhooks, mail) that survive restarts.

Producers call `enqueue` inside their own transaction, so a message exists exactly when the rows
that caused it exist. A periodic job (`deliver_due`) sends what is due; failures retry with capped
exponential backoff and jitter (geekai/backoff.py), and after OUTBOX_MAX_ATTEMPTS a message is
`failed` (shown to the admin, retryable by hand). Delivery is at least once: every request carries
the message's idempotency key (`Idempotency-Key` header, or the mail's Message-ID) so receivers can
drop repeats.

One concern per module: queue.py (the table, claims, outcomes, retry), http_sender.py (signed
POSTs bounded in time, and the answer checks channel owners register), smtp_sender.py (mail).
"""
from __future__ import annotations

from ..redaction import redact, redact_text
from . import queue
from .http_sender import SIGNATURE_HEADER, TIMESTAMP_HEADER, register_answer_check, send_http, sign
from .queue import (DELIVERED, FAILED, JOB_ID, PENDING, STATUSES, TRANSPORTS, DeliveryError, OutboxMessage,
                    backoff, backoff_delay, deliver_due, emit_event, enqueue, init_app, queue_message, retry,
                    send)
from .smtp_sender import send_smtp, smtp_target

queue.SENDERS.update(http=send_http, smtp=send_smtp)

__all__ = ["DELIVERED", "FAILED", "JOB_ID", "PENDING", "STATUSES", "TRANSPORTS", "DeliveryError", "OutboxMessage",
           "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "backoff", "backoff_delay", "deliver_due", "emit_event", "enqueue", "init_app",
           "queue_message", "redact", "redact_text", "register_answer_check", "retry", "send", "sign", "smtp_target"]
