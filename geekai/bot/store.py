"""Persistence of the bot's state row and its event history, from any thread."""
from __future__ import annotations

import logging
import os
import threading

from ..db import db, utcnow
from ..models import STATE_ROW_ID, BotEvent, BotState

logger = logging.getLogger(__name__)

# Fields of the state row that describe one state only and are cleared on each transition.
_PER_STATE_FIELDS = ("detail", "next_retry_at", "qr_expires_at", "qr_png", "verify_code")


class ChangeSignal:
    """Wakes readers (the live page's event stream) when the state row changes."""

    def __init__(self):
        self._condition = threading.Condition()
        self.version = 0

    def notify(self) -> None:
        with self._condition:
            self.version += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version moves past `seen` or `timeout` passes; return the version."""
        with self._condition:
            self._condition.wait_for(lambda: self.version != seen, timeout)
            return self.version


def change_signal(app) -> ChangeSignal:
    """The app's signal, shared by the bot thread that writes and the views that read."""
    return app.extensions.setdefault("geekai.state_changed", ChangeSignal())


class StateStore:
    """Writes transitions in the bot's own app context; a failed write is logged, never raised."""

    def __init__(self, app):
        self.app = app

    def transition(self, old: str, new: str, reason: str = "", *, actor: str = "bot", **fields) -> bool:
        """Set the state row to `new` and append one event; True when written."""
        now = utcnow()
        values = {name: None for name in _PER_STATE_FIELDS}
        values["detail"] = ""
        values.update(fields)
        if new != "logged_in" and "account" not in fields:
            values["account"] = None
        return self._write(new, now, reason, values, BotEvent(
            at=now, from_state=old, to_state=new, reason=reason,
            detail=values.get("detail") or "", actor=actor))

    def replace_previous(self, initial: str, reason: str) -> str | None:
        """At process start: overwrite whatever state the previous process left; return that state."""
        try:
            with self.app.app_context():
                row = db.session.get(BotState, STATE_ROW_ID)
                previous = row.state if row else None
        except Exception:
            logger.exception("could not read the previous bot state")
            previous = None
        event = None
        if previous not in (None, initial):
            event = BotEvent(from_state=previous, to_state=initial, reason=reason, actor="system")
        self._write(initial, utcnow(), reason, {name: None for name in _PER_STATE_FIELDS} | {
            "detail": "", "account": None, "attempt": 0}, event)
        return previous

    def _write(self, state: str, now, reason: str, values: dict, event: BotEvent | None) -> bool:
        try:
            with self.app.app_context():
                row = db.session.get(BotState, STATE_ROW_ID) or BotState(id=STATE_ROW_ID)
                row.state, row.since, row.reason, row.pid, row.updated_at = state, now, reason, os.getpid(), now
                for name, value in values.items():
                    setattr(row, name, value)
                db.session.add(row)
                if event is not None:
                    db.session.add(event)
                db.session.commit()
            change_signal(self.app).notify()
            return True
        except Exception:
            logger.exception("could not record bot state %s", state)
            return False
