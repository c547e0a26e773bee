"""The bot's state row as this process last wrote or read it, so that reading it costs no query.

GET /api/bot, the login QR and the live page's snapshot are asked for far more often than the
state changes. The state store (store.py, the one writer) puts the row here after each commit;
a process that does not run the bot (a follower, see lease.py) reloads it when its watch sees
the leader's change in the database (runtime.py). Only a process with a bot runtime keeps the
cache current that way: anywhere else (the CLI, an app built without starting the bot) every
read goes to the database, as before.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..db import db
from ..models import STATE_ROW_ID, BotState

EXTENSION = "geekai.state_cache"


@dataclass(frozen=True)
class CachedState:
    """One reading of the row: what the API shows, and the login QR (a credential: not in `view`)."""

    view: dict      # shared by every reader: never modify it
    qr_png: bytes | None
    # What readers derive from `view` (the web's annotated form, its JSON), kept here so that each
    # is computed once per change rather than once per request.
    derived: dict = field(default_factory=dict, compare=False)

    def derive(self, name: str, make):
        """make(self), computed at the first call for this state (a race computes it twice, harmlessly)."""
        if name not in self.derived:
            self.derived[name] = make(self)
        return self.derived[name]

    @property
    def state(self) -> str:
        return self.view["state"]


def from_row(row: BotState | None) -> CachedState:
    """The reading of a row; of none, the state before the first write (stopped)."""
    if row is None:
        row = BotState(state="stopped", reason="", detail="", attempt=0)
        return CachedState(row.to_dict() | {"since": None}, None)
    return CachedState(row.to_dict(), row.qr_png)


class StateCache:
    """The latest CachedState; `kept` once something in this process keeps it current."""

    def __init__(self):
        self._lock = threading.Lock()
        self._current: CachedState | None = None
        self.kept = False

    def get(self) -> CachedState:
        """The cached state when it is kept current, else the row read now (in an app context)."""
        current = self._current
        if current is not None and self.kept:
            return current
        return self.load()

    def load(self) -> CachedState:
        """Read the row now and cache it (in an app context)."""
        with self._lock:
            self._current = from_row(db.session.get(BotState, STATE_ROW_ID, populate_existing=True))
            return self._current

    def put(self, state: CachedState) -> None:
        """The row the store has just committed."""
        with self._lock:
            self._current = state


def state_cache(app) -> StateCache:
    """The app's cache, shared by the writer, the follower's watch and the views."""
    return app.extensions.setdefault(EXTENSION, StateCache())
