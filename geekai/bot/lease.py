"""One bot per deployment: a lease row in the database says which process runs it.

Every process (gunicorn workers, several hosts) serves the page and the API; only the holder of
the lease runs the bot and the periodic jobs. The holder renews the lease every third of
BOT_LEASE_SECONDS. Another process takes it over once it has expired, at once when it was given
up at a clean shutdown or its holder is a process of this host that no longer exists (a restart
needs no wait). Each change of holder raises the epoch; every write of the bot's state checks the
epoch in its own transaction (guard()), so a holder that was frozen past its lease and wakes up
again writes nothing more: it learns it lost the lease and stops its bot.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update

from ..db import db, isoformat, utcnow
from ..models import BotLease

logger = logging.getLogger(__name__)

LEASE_ROW_ID = 1


@dataclass(frozen=True)
class Acquired:
    """How this process came to hold the lease."""

    epoch: int
    previous_owner: str | None     # None: nobody held it before
    # How the previous holder's lease ended: "" (there was none, or it is ours), "released" (a
    # clean shutdown gave it up), "gone" (its process on this host has ended) or "expired".
    ended: str


def new_owner_id() -> str:
    """This process's name in the lease: host, pid and a token that tells restarts apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(owner: str | None) -> str:
    """An owner id as people read it: "pid 123 on host"."""
    if not owner:
        return "nobody"
    host, pid, _token = (owner.rsplit(":", 2) + ["", ""])[:3]
    return f"pid {pid} on {host}"


def owner_is_gone(owner: str) -> bool:
    """True when `owner` was a process of this host that has ended (or an earlier life of this pid)."""
    try:
        host, pid, _token = owner.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False   # another host: only its lease's expiry tells
    if pid == os.getpid():
        return owner not in _OWNERS_HERE  # an earlier process that had this pid (a container restart)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# Owner ids made by this process (several apps in one process each have their own).
_OWNERS_HERE: set[str] = set()


class Lease:
    """This process's view of the lease: try to take it, renew it, give it up, guard writes."""

    def __init__(self, app, seconds: float, owner: str | None = None):
        self.app = app
        self.seconds = seconds
        self.owner = owner or new_owner_id()
        _OWNERS_HERE.add(self.owner)
        self.epoch: int | None = None   # set while this process holds the lease

    @property
    def held(self) -> bool:
        return self.epoch is not None

    def try_acquire(self) -> Acquired | None:
        """Take the lease if it is free, expired or abandoned; None when another process holds it
        or the database does not answer."""
        try:
            return self._try_acquire()
        except Exception as exc:
            logger.warning("could not look at the bot lease: %s", exc)
            return None

    def _try_acquire(self) -> Acquired | None:
        now = utcnow()
        with self.app.app_context():
            row = db.session.get(BotLease, LEASE_ROW_ID)
            if row is None:
                db.session.add(BotLease(id=LEASE_ROW_ID, owner=self.owner, epoch=1, acquired_at=now,
                                        renewed_at=now, expires_at=self._expiry(now), released=False))
                if not self._commit():
                    return None
                self.epoch = 1
                return Acquired(1, None, "")
            if row.owner == self.owner and row.epoch == self.epoch:
                return Acquired(row.epoch, row.owner, "")
            if row.released:
                ended = "released"
            elif owner_is_gone(row.owner):
                ended = "gone"
            elif row.expires_at <= now:
                ended = "expired"
            else:
                db.session.rollback()
                return None
            seen, previous = row.epoch, row.owner
            # Compare and set: of several processes that saw the same epoch, one wins.
            taken = db.session.execute(
                update(BotLease).where(BotLease.id == LEASE_ROW_ID, BotLease.epoch == seen)
                .values(owner=self.owner, epoch=seen + 1, acquired_at=now, renewed_at=now,
                        expires_at=self._expiry(now), released=False)).rowcount
            if taken != 1 or not self._commit():
                db.session.rollback()
                return None
            self.epoch = seen + 1
            return Acquired(self.epoch, previous, ended)

    def renew(self) -> bool | None:
        """Extend the lease; False when it was lost (another process holds a newer epoch), None
        when the database did not answer (the lease is kept until it is known lost)."""
        if self.epoch is None:
            return False
        now = utcnow()
        try:
            with self.app.app_context():
                renewed = db.session.execute(self._mine().values(
                    renewed_at=now, expires_at=self._expiry(now))).rowcount
                db.session.commit()
        except Exception as exc:
            logger.warning("could not renew the bot lease: %s", exc)
            return None
        if renewed != 1:
            self.epoch = None
            return False
        return True

    def release(self) -> None:
        """Give the lease up at a clean shutdown, so that another process need not wait for its expiry."""
        if self.epoch is None:
            return
        try:
            with self.app.app_context():
                db.session.execute(self._mine().values(released=True, expires_at=utcnow()))
                db.session.commit()
        except Exception:
            logger.warning("could not give up the bot lease; it expires by itself", exc_info=True)
        self.epoch = None

    def guard(self, session) -> bool:
        """In a write's transaction: True while this process still holds the lease (fencing)."""
        if self.epoch is None:
            return False
        return session.execute(self._mine().values(renewed_at=utcnow())).rowcount == 1

    def holder(self) -> dict:
        """The lease as the API shows it."""
        with self.app.app_context():
            row = db.session.get(BotLease, LEASE_ROW_ID)
            if row is None:
                return {"owner": None, "epoch": 0, "expires_at": None, "mine": False}
            return {"owner": describe(row.owner), "epoch": row.epoch, "expires_at": isoformat(row.expires_at),
                    "mine": row.owner == self.owner and row.epoch == self.epoch}

    def _mine(self):
        return update(BotLease).where(BotLease.id == LEASE_ROW_ID, BotLease.owner == self.owner,
                                      BotLease.epoch == self.epoch)

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)

    def _commit(self) -> bool:
        try:
            db.session.commit()
            return True
        except Exception as exc:  # another process inserted the row first, or the database is away
            logger.info("bot lease not taken: %s", exc)
            db.session.rollback()
            return False
