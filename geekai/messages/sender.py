"""The send queue: queued messages go out through the bot's session, oldest first for each contact.

Only the head of each contact's queue (its oldest queued message) may be sent, so a message that
waits for a retry holds back the later ones to the same person, never those to anyone else.
Before a send the message is claimed (a token and a lapse time, committed); the outcome is
written only by the holder of the claim, with its message.sent / message.failed event in the
same transaction. A claim that lapsed without an outcome means the process died during the send:
WeChat may or may not have the message, so it is marked failed with that reason rather than sent
a second time (docs/messages.md).

Nothing here depends on the protocol: the supervisor's send_text is the whole interface.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, update
from sqlalchemy.exc import OperationalError

from ..backoff import delay as backoff_delay
from ..bot import runtime as bot_runtime
from ..bot.errors import NotOnline, SendFailed
from ..db import db, utcnow
from . import feed
from .models import FAILED, OUT, QUEUED, SENT, Message

logger = logging.getLogger(__name__)

JOB_ID = "messages-send"
WAKE_JOB_ID = "messages-send-now"
EXTENSION = "geekai.send_queue"
# Far longer than any one send may take (wxpy: 5 s to connect, 10 s for the answer; iLink's
# login timeout), plus the outcome's write: a claim this old belongs to a send that never finished.
CLAIM_SECONDS = 120
# Once WeChat has a message its outcome must be written: a locked or briefly absent database is
# waited out this many times before the claim is left to lapse.
OUTCOME_ATTEMPTS = 5
BATCH = 50
# One run sends at most this many, so a long queue cannot hold a scheduler thread for ever.
MAX_PER_RUN = 1000
INTERRUPTED = ("interrupted: the service stopped while sending this message, so WeChat may or may "
               "not have delivered it; it is not sent again automatically (post it again with a new "
               "key if it did not arrive)")


@dataclass(frozen=True)
class Claimed:
    """What a send needs of a claimed message (kept in memory: no reload after the commit)."""

    id: int
    contact: str
    text: str
    attempts: int
    token: str


class SendQueue:
    """The send queue of one app; run() is safe to call from any number of threads at once."""

    def __init__(self, app):
        self.app = app
        self._running = threading.Lock()
        self._again = threading.Event()

    def run(self) -> int:
        """Send what is due until nothing is; a caller that finds a run going only asks it to
        look once more. Returns how many were sent by this call."""
        self._again.set()
        sent = 0
        while self._again.is_set() and self._running.acquire(blocking=False):
            try:
                while self._again.is_set():
                    self._again.clear()
                    sent += self._send_all()
            finally:
                self._running.release()
        return sent

    @property
    def busy(self) -> bool:
        return self._running.locked()

    def _send_all(self) -> int:
        runtime = bot_runtime.get(self.app)
        supervisor = runtime.supervisor if runtime is not None else None
        if supervisor is None or supervisor.session is None:
            return 0  # offline: nothing can go out, and the database is not even asked
        sent = 0
        with self.app.app_context():
            fail_interrupted()
            for _ in range(MAX_PER_RUN // BATCH):
                due = due_heads(BATCH)
                if not due:
                    break
                for message_id in due:
                    outcome = self._send_one(supervisor, message_id)
                    if outcome is None:
                        return sent  # the bot went offline: the rest waits for the next login
                    sent += outcome == SENT
        return sent

    def _send_one(self, supervisor, message_id: int) -> str | None:
        """Claim, send and record one message; its new status, or None when the bot is offline."""
        claimed = claim(message_id)
        if claimed is None:
            return ""  # another worker has it, or it is no longer due
        try:
            supervisor.send_text(claimed.contact, claimed.text)
        except NotOnline:
            _persist(release, claimed)
            return None
        except SendFailed as exc:
            return _persist(record_failure, self.app, claimed, str(exc) or type(exc).__name__, exc.permanent)
        except Exception as exc:  # a defect in a backend must not stop the queue
            logger.exception("sending message %s failed unexpectedly", claimed.id)
            return _persist(record_failure, self.app, claimed, f"unexpected {type(exc).__name__}: {exc}", False)
        return _persist(record_sent, claimed)


def send_queue(app) -> SendQueue:
    """The app's queue (one per app, shared by the periodic job and wake())."""
    return app.extensions.setdefault(EXTENSION, SendQueue(app))


def send_due(app) -> int:
    """The periodic job: send what is due while the bot is online."""
    return send_queue(app).run()


def wake(app) -> None:
    """A message was queued: send it now when this process runs the bot (otherwise the bot's own
    process finds it within MESSAGE_SEND_INTERVAL_SECONDS)."""
    runtime = bot_runtime.get(app)
    if runtime is None or not runtime.scheduler.running:
        return
    queue = send_queue(app)
    if queue.busy:
        queue._again.set()  # the running round looks once more before it ends
        return
    runtime.scheduler.add_job(send_due, "date", run_date=datetime.now(timezone.utc), args=[app],
                              id=WAKE_JOB_ID, replace_existing=True, misfire_grace_time=None)


# ----- the rows ------------------------------------------------------------------------------

def due_heads(limit: int) -> list[int]:
    """Ids of each contact's oldest queued message, where that message is due and not claimed."""
    heads = (db.select(func.min(Message.id)).where(Message.direction == OUT, Message.status == QUEUED)
             .group_by(Message.contact))
    query = (db.select(Message.id).where(Message.id.in_(heads), Message.next_attempt_at <= utcnow(),
                                         Message.claim_token.is_(None))
             .order_by(Message.id).limit(limit))
    due = list(db.session.execute(query).scalars())
    db.session.commit()  # end the read before the first write
    return due


def claim(message_id: int) -> Claimed | None:
    """Mark one due message as being sent (commits); None if it is not due or taken."""
    now = utcnow()
    token = secrets.token_hex(16)
    result = db.session.execute(
        update(Message).where(Message.id == message_id, Message.status == QUEUED,
                              Message.claim_token.is_(None), Message.next_attempt_at <= now)
        .values(claim_token=token, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)),
        execution_options={"synchronize_session": False})
    db.session.commit()
    if result.rowcount != 1:
        return None
    row = db.session.get(Message, message_id, populate_existing=True)
    claimed = Claimed(row.id, row.contact, row.text, row.attempts, token)
    db.session.commit()
    return claimed


def release(claimed: Claimed) -> None:
    """Give a claimed message back untouched (the bot went offline before it was tried)."""
    _finish(claimed, claim_token=None, claimed_until=None)
    db.session.commit()


def record_sent(claimed: Claimed) -> str:
    if _finish(claimed, status=SENT, sent_at=utcnow(), attempts=claimed.attempts + 1, error="",
               next_attempt_at=None, claim_token=None, claimed_until=None):
        feed.emit("message.sent", db.session.get(Message, claimed.id, populate_existing=True))
        logger.info("message %s to %r sent", claimed.id, claimed.contact)
    db.session.commit()
    return SENT


def record_failure(app, claimed: Claimed, reason: str, permanent: bool) -> str:
    """A permanent failure, or the last allowed attempt, fails the message; otherwise it waits
    for a retry, with the bot's own capped, jittered backoff (from MESSAGE_RETRY_FIRST_SECONDS)."""
    attempts = claimed.attempts + 1
    config = app.config
    if not permanent and attempts < config["MESSAGE_MAX_ATTEMPTS"]:
        delay = backoff_delay(attempts, config["MESSAGE_RETRY_FIRST_SECONDS"], config["MESSAGE_RETRY_MAX_SECONDS"])
        _finish(claimed, attempts=attempts, error=reason, next_attempt_at=utcnow() + timedelta(seconds=delay),
                claim_token=None, claimed_until=None)
        db.session.commit()
        logger.info("message %s to %r: attempt %d failed, next in %.1f s: %s",
                    claimed.id, claimed.contact, attempts, delay, reason)
        return QUEUED
    if not permanent:
        reason = f"gave up after {attempts} attempts: {reason}"
    if _finish(claimed, status=FAILED, attempts=attempts, error=reason, next_attempt_at=None,
               claim_token=None, claimed_until=None):
        feed.emit("message.failed", db.session.get(Message, claimed.id, populate_existing=True))
        logger.warning("message %s to %r failed: %s", claimed.id, claimed.contact, reason)
    db.session.commit()
    return FAILED


def fail_interrupted() -> int:
    """Messages whose send never finished (the claim lapsed): failed, with the reason (commits)."""
    lapsed = list(db.session.execute(
        db.select(Message.id, Message.claim_token).where(Message.direction == OUT, Message.status == QUEUED,
                                                         Message.claim_token.is_not(None),
                                                         Message.claimed_until < utcnow())))
    db.session.commit()
    for message_id, token in lapsed:
        claimed = Claimed(message_id, "", "", 0, token)
        if _finish(claimed, status=FAILED, error=INTERRUPTED, next_attempt_at=None, claim_token=None,
                   claimed_until=None):
            feed.emit("message.failed", db.session.get(Message, message_id, populate_existing=True))
            logger.warning("message %s: %s", message_id, INTERRUPTED)
        db.session.commit()
    return len(lapsed)


def _persist(write, *args):
    """write(*args), tried again while the database is locked or away (each try rolls back first)."""
    for attempt in range(OUTCOME_ATTEMPTS):
        try:
            return write(*args)
        except OperationalError:
            db.session.rollback()
            if attempt == OUTCOME_ATTEMPTS - 1:
                raise
            logger.warning("recording a send's outcome failed, trying again", exc_info=True)
            time.sleep(0.5 * (attempt + 1))
    return None


def _finish(claimed: Claimed, **values) -> bool:
    """Write an outcome in the current transaction, only while `claimed` still holds the claim."""
    result = db.session.execute(
        update(Message).where(Message.id == claimed.id, Message.claim_token == claimed.token).values(**values),
        execution_options={"synchronize_session": False})
    return result.rowcount == 1
