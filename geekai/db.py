"""The SQLAlchemy extension and SQLite connection settings."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.engine import make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from .file_modes import tighten_database


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


logger = logging.getLogger(__name__)
# How long a received message (or payment notice) waits for a locked or absent database before the
# error is given up on: far longer than a backup or a `sqlite3` shell holds the file. The bot's
# receive thread waits meanwhile; the messages behind it wait in the protocol's queue, not lost.
STORE_PATIENCE = 120.0


def store_patiently(store, what: str, patience: float = STORE_PATIENCE):
    """`store()` (which commits), tried again with growing pauses while the database is locked or
    unreachable (OperationalError); its result, or the last error once `patience` seconds passed."""
    deadline, pause, warned = time.monotonic() + patience, 0.2, False
    while True:
        try:
            result = store()
        except OperationalError:
            db.session.rollback()
            if time.monotonic() + pause > deadline:
                raise
            if not warned:
                logger.warning("storing %s waits for the database (locked or unreachable)", what, exc_info=True)
                warned = True
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        if warned:
            logger.warning("stored %s once the database answered", what)
        return result


def utcnow() -> datetime:
    """Naive UTC now: SQLite keeps no time zone, so every stored time is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def isoformat(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with an explicit Z."""
    return None if moment is None else moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat() + "Z"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the page read while the bot thread writes; busy_timeout waits out a writer
    # instead of failing at once with "database is locked".
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def init_app(app) -> None:
    """Bind the extension; a SQLite file is private (it holds the QR). The tables: geekai/schema.py."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = url.database if os.path.isabs(url.database) else os.path.join(app.instance_path, url.database)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        tighten_database(path)
    _fit_pool(app, url)
    db.init_app(app)


# Connections a pool keeps beyond DB_POOL_SIZE while a burst lasts (closed when returned).
POOL_OVERFLOW = 10


def _fit_pool(app, url) -> None:
    """A pool with a connection for each server thread and the bot's own (DB_POOL_SIZE): with
    fewer, busy moments open and close a connection per request."""
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return  # one shared in-memory connection: no pool to size
    options.setdefault("pool_size", app.config["DB_POOL_SIZE"])
    options.setdefault("max_overflow", POOL_OVERFLOW)
    if url.get_backend_name() == "postgresql":
        # A restarted server leaves the pool's connections dead: test each before use.
        options.setdefault("pool_pre_ping", True)
