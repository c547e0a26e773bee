"""The server-side half of the admin's sign-in: one version number every admin cookie must carry.

The admin session is a signed cookie; on its own it stays valid until it expires, even after a
logout (a copy of it still works). So each sign-in records the current version in the cookie,
every request compares it with the row here, and a logout or a changed password bumps the
version: every cookie issued before is then refused, in every process that shares the database.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime

from sqlalchemy import Integer, String, update
from sqlalchemy.orm import Mapped, mapped_column

from .db import db, utcnow

logger = logging.getLogger(__name__)

ROW_ID = 1


class AdminSession(db.Model):
    """One row: the current admin session version and the password it was issued under."""

    __tablename__ = "admin_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A keyed digest of the admin credential (never the password): a different one at start
    # means the password was changed, and the sessions of the old one end.
    credential: Mapped[str] = mapped_column(String(64), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


def credential_digest(config) -> str:
    """What identifies the admin password in force, without revealing it."""
    credential = config.get("ADMIN_PASSWORD") or config.get("ADMIN_PASSWORD_HASH") or ""
    return hmac.new(config["SECRET_KEY"].encode(), b"admin-credential:" + credential.encode(),
                    hashlib.sha256).hexdigest()[:32]


def current_version(config) -> int:
    """The version a valid admin cookie carries now. Meeting another password than the row's
    (it was changed since) bumps it first; so do processes sharing a database with different
    passwords, each time: give them the same one."""
    row = db.session.get(AdminSession, ROW_ID)
    digest = credential_digest(config)
    if row is not None and row.credential == digest:
        return row.version
    if row is None:
        db.session.add(AdminSession(id=ROW_ID, version=1, credential=digest, changed_at=utcnow()))
        try:
            db.session.commit()
            return 1
        except Exception:  # another process made the row first
            db.session.rollback()
        return current_version(config)
    logger.warning("the admin password changed: every admin session signed in before ends")
    return bump(config, digest)


def bump(config, digest: str | None = None) -> int:
    """End every admin session issued so far (a logout, a new password); the new version."""
    values = {"version": AdminSession.version + 1, "changed_at": utcnow()}
    if digest is not None:
        values["credential"] = digest
    db.session.execute(update(AdminSession).where(AdminSession.id == ROW_ID).values(**values),
                       execution_options={"synchronize_session": False})
    db.session.commit()
    row = db.session.get(AdminSession, ROW_ID, populate_existing=True)
    return row.version if row is not None else current_version(config)
