"""Persistence of the bot's state row and its event history, from any thread, losing nothing.

The supervisor never waits on the database: a transition is queued in order and returns at once;
one writer thread writes the queue, oldest first, and retries while the database is locked or
away (another writer holding SQLite, a PostgreSQL restart), so the history keeps every transition
in order and the state row ends right once the database answers again. A lease guard (see
lease.py) may forbid the writes of a process that is no longer the bot's leader: those are dropped.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..db import db, utcnow
from ..models import STATE_ROW_ID, BotEvent, BotState
from ..redaction import redact_text
from .state_cache import from_row, state_cache

logger = logging.getLogger(__name__)

# Fields of the state row that describe one state only and are cleared on each transition.
_PER_STATE_FIELDS = ("detail", "next_retry_at", "qr_expires_at", "qr_png", "verify_code")
# The writer's pause after a failed write grows to this; each write itself may wait out SQLite's
# busy timeout first.
_RETRY_MAX_SECONDS = 2.0
# A failing database is logged at once, then once per this many seconds while it keeps failing.
_LOG_EVERY_SECONDS = 60.0


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


@dataclass
class _Write:
    """One queued change: the state row's new values and the history row, if any."""

    state: str
    at: object
    reason: str
    values: dict
    event: dict | None


class StateStore:
    """Queues transitions and writes them in order from its own thread; never raises to callers.

    `guard(session)`, when given, runs inside each write's transaction and returns False once this
    process may no longer write the bot's state (it lost the lease): the queue is then dropped.
    """

    def __init__(self, app, guard: Callable | None = None):
        self.app = app
        self.guard = guard
        self.fenced = False
        self._queue: deque[_Write] = deque()
        self._condition = threading.Condition()
        self._writing = 0          # queued items the writer has taken and not yet finished
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- what the supervisor calls -----------------------------------------------------------
    def transition(self, old: str, new: str, reason: str = "", *, actor: str = "bot", **fields) -> None:
        """Queue: set the state row to `new` and append one event."""
        now = utcnow()
        values = {name: None for name in _PER_STATE_FIELDS}
        values["detail"] = ""
        values.update(fields)
        # Reasons and tracebacks quote WeChat's URLs, whose skey/sid/pass_ticket are the session.
        reason, values["detail"] = redact_text(reason), redact_text(values.get("detail") or "")
        if new != "logged_in" and "account" not in fields:
            values["account"] = None
        event = dict(at=now, from_state=old, to_state=new, reason=reason,
                     detail=values.get("detail") or "", actor=actor)
        self._put(_Write(new, now, reason, values, event))

    def replace_previous(self, initial: str, reason: str, actor: str = "system",
                         always: bool = False) -> str | None:
        """When a process starts running the bot: queue overwriting whatever state the previous one
        left (an event records it if it differed, or `always`); return that state. Call flush()
        before serving, so that nobody sees the stale one."""
        previous = self.read_state()
        event = None
        if always or previous not in (None, initial):
            event = dict(at=utcnow(), from_state=previous or initial, to_state=initial, reason=reason, detail="",
                         actor=actor)
        self._put(_Write(initial, utcnow(), reason, {name: None for name in _PER_STATE_FIELDS} | {
            "detail": "", "account": None, "attempt": 0}, event))
        return previous

    def read_state(self) -> str | None:
        """The state the row holds now (None without a row or a database)."""
        try:
            with self.app.app_context():
                row = db.session.get(BotState, STATE_ROW_ID)
                return row.state if row else None
        except Exception:
            logger.exception("could not read the bot state")
            return None

    def last_change(self) -> tuple | None:
        """A marker that moves whenever anyone writes the state (None without a database)."""
        try:
            with self.app.app_context():
                row = db.session.execute(db.select(BotState.updated_at, BotState.state)
                                         .where(BotState.id == STATE_ROW_ID)).first()
                return tuple(row) if row is not None else ()
        except Exception:
            return None

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is written (or dropped by the guard); True when done."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
            return True

    def close(self, timeout: float) -> bool:
        """Write what is queued (up to `timeout`), then end the writer; True when nothing was left."""
        done = self.flush(timeout)
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if not done:
            logger.error("bot state not recorded before exit: %s", ", ".join(w.state for w in self._queue))
        return done

    @property
    def pending(self) -> int:
        with self._condition:
            return len(self._queue) + self._writing

    # -- the writer thread -------------------------------------------------------------------
    def _put(self, write: _Write) -> None:
        with self._condition:
            if self.fenced:
                logger.warning("bot state %s not recorded: this process lost the bot lease", write.state)
                return
            self._queue.append(write)
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="geekai-state-writer", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _run(self) -> None:
        failing_since = None
        last_logged = 0.0
        pause = 0.05
        while True:
            with self._condition:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._writing = len(batch)
                self._queue.clear()
            try:
                written = self._write(batch)
            except Exception:
                written = None
                now = time.monotonic()
                if failing_since is None or now - last_logged >= _LOG_EVERY_SECONDS:
                    logger.exception("could not record bot state %s (%d change(s) waiting; retrying)",
                                     batch[-1].state, len(batch))
                    last_logged = now
                failing_since = failing_since or now
            if written is not None and failing_since is not None:
                logger.warning("bot state recorded again after %.1f s", time.monotonic() - failing_since)
                failing_since, pause = None, 0.05
            if written:
                change_signal(self.app).notify()
            with self._condition:
                self._writing = 0
                if written is None:
                    self._queue.extendleft(reversed(batch))   # keep them first, in order
                self._condition.notify_all()
                if written is None and self._closed:
                    return
            if written is None:
                time.sleep(pause)
                pause = min(_RETRY_MAX_SECONDS, pause * 2)

    def _write(self, batch: list[_Write]) -> bool:
        """Write a batch in one transaction; False when the guard forbade it (the batch is dropped)."""
        with self.app.app_context():
            if self.guard is not None and not self.guard(db.session):
                db.session.rollback()
                self._fence(batch)
                return False
            row = db.session.get(BotState, STATE_ROW_ID) or BotState(id=STATE_ROW_ID)
            for write in batch:
                row.state, row.since, row.reason = write.state, write.at, write.reason
                row.pid, row.updated_at = os.getpid(), write.at
                for name, value in write.values.items():
                    setattr(row, name, _fit(BotState, name, value))
                if write.event is not None:
                    db.session.add(BotEvent(**{k: _fit(BotEvent, k, v) for k, v in write.event.items()}))
            db.session.add(row)
            db.session.flush()       # a new row gets its column defaults
            cached = from_row(row)   # before the commit expires the row (reading it again would query)
            db.session.commit()
        state_cache(self.app).put(cached)
        return True

    def _fence(self, batch: list[_Write]) -> None:
        with self._condition:
            self.fenced = True
            dropped = batch + list(self._queue)
            self._queue.clear()
        logger.warning("this process lost the bot lease: %d state change(s) not recorded (%s)",
                       len(dropped), ", ".join(w.state for w in dropped))


def _fit(model, name: str, value):
    """A text cut to its column's length: PostgreSQL refuses what SQLite would keep."""
    length = getattr(model.__table__.columns[name].type, "length", None)
    if length and isinstance(value, str) and len(value) > length:
        return value[:length - 1] + "…"
    return value
