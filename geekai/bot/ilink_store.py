"""The iLink adapter's memory across restarts, in the database (the IlinkStore it is given).

Called from the poll thread and from any thread that sends, each call in its own app context. A
database that fails is logged, never raised into the poll loop: the worst it costs is a message
handed over twice after a restart, never one lost.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from ..db import db, utcnow
from ..models import IlinkContact, IlinkSeenMessage, IlinkSync

logger = logging.getLogger(__name__)

SYNC_ROW_ID = 1
# iLink redelivers within a session's reach; a week of message ids is plenty to drop repeats.
KEEP_SEEN = timedelta(days=7)


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=timezone.utc).timestamp()


class IlinkStateStore:
    """Cursor, handed-over message ids and context tokens, for one deployment's bot."""

    def __init__(self, app):
        self.app = app

    def resume(self, bot_id: str) -> str:
        """The cursor this bot stopped at ("" for another bot or none); drops ids older than a week."""
        try:
            with self.app.app_context():
                db.session.execute(db.delete(IlinkSeenMessage).where(IlinkSeenMessage.seen_at < utcnow() - KEEP_SEEN))
                db.session.commit()
                row = db.session.get(IlinkSync, SYNC_ROW_ID)
                return row.cursor if row is not None and row.bot_id == bot_id else ""
        except Exception:
            logger.exception("could not read the iLink cursor; iLink resumes where it last saw this bot")
            return ""

    def save_cursor(self, bot_id: str, cursor: str) -> None:
        def write():
            self._sync_row(bot_id).cursor = cursor
        self._write(write, "the iLink cursor")

    def start_over(self, bot_id: str) -> None:
        """A new QR login: its token starts a new cursor; another bot's contacts are not this one's."""
        def write():
            row = db.session.get(IlinkSync, SYNC_ROW_ID)
            if row is not None and row.bot_id != bot_id:
                db.session.execute(db.delete(IlinkContact))
            self._sync_row(bot_id).cursor = ""
        self._write(write, "the new iLink login")

    def seen(self, message_id: str) -> bool:
        try:
            with self.app.app_context():
                return db.session.get(IlinkSeenMessage, message_id) is not None
        except Exception:
            logger.exception("could not look up iLink message %s; handing it over", message_id)
            return False

    def delivered(self, message_id: str, contact: str, context_token: str, at: float) -> None:
        def write():
            db.session.merge(IlinkSeenMessage(message_id=message_id, seen_at=utcnow()))
            if contact and context_token:
                row = db.session.get(IlinkContact, contact)
                if row is None:
                    db.session.add(IlinkContact(user_id=contact, context_token=context_token,
                                                last_message_at=_moment(at)))
                elif _epoch(row.last_message_at) <= at:
                    row.context_token, row.last_message_at = context_token, _moment(at)
        self._write(write, f"iLink message {message_id} as handed over")

    def context(self, contact: str) -> tuple[str, float] | None:
        try:
            with self.app.app_context():
                row = db.session.get(IlinkContact, contact)
                return (row.context_token, _epoch(row.last_message_at)) if row is not None else None
        except Exception:
            logger.exception("could not read the context token of %s", contact)
            return None

    def _sync_row(self, bot_id: str) -> IlinkSync:
        row = db.session.get(IlinkSync, SYNC_ROW_ID) or IlinkSync(id=SYNC_ROW_ID, cursor="")
        row.bot_id, row.updated_at = bot_id, utcnow()
        db.session.add(row)
        return row

    def _write(self, change, what: str) -> None:
        try:
            with self.app.app_context():
                change()
                db.session.commit()
        except Exception:
            logger.exception("could not record %s", what)
