"""Credential files stay private: anything others could read or write is made 0600 at start.

secrets.json, the SQLite database (with its -wal and -shm), and the WeChat session caches hold
credentials. New ones are created 0600; one left 0644 by an older version, a careless copy or a
restore from a backup is tightened here, with a warning that names it.
"""
from __future__ import annotations

import glob
import logging
import os
import stat

logger = logging.getLogger(__name__)


def tighten(path: str) -> bool:
    """Make an existing regular file 0600 if group or others have any access; True if changed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o077 or info.st_uid != os.geteuid():
        return False
    os.chmod(path, 0o600)
    logger.warning("%s was readable or writable by others (mode %o); it is now 0600",
                   path, stat.S_IMODE(info.st_mode))
    return True


def tighten_database(path: str) -> None:
    """The SQLite file and the journal files beside it."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        tighten(name)


def tighten_session_caches(path: str) -> None:
    """The session cache and the copies of it set aside (stale, unreadable, not private)."""
    tighten(path)
    for aside in glob.glob(glob.escape(path) + ".*-[0-9]*"):
        tighten(aside)
