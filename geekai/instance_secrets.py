"""Secrets that are generated on first start and kept in instance/secrets.json (mode 0600)."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import sys

from werkzeug.security import generate_password_hash

from .file_modes import tighten

logger = logging.getLogger(__name__)

FILE_NAME = "secrets.json"


def secrets_path(instance_path: str) -> str:
    return os.path.join(instance_path, FILE_NAME)


def write_private(path: str, data: bytes) -> None:
    """Write a file readable by this user only, replacing it atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_stored(instance_path: str) -> dict:
    """The stored secrets, or {} when there are none yet."""
    try:
        with open(secrets_path(instance_path), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def ensure(app) -> None:
    """Fill SECRET_KEY, API_TOKEN and the admin password from config or instance/, generating what is missing.

    Several processes may start at once (gunicorn's workers): they take turns, so that all of
    them end up with the secrets the first one generated.
    """
    lock_path = secrets_path(app.instance_path) + ".lock"
    with open(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure(app)


def _ensure(app) -> None:
    tighten(secrets_path(app.instance_path))
    stored = read_stored(app.instance_path)
    changed = False
    for key in ("SECRET_KEY", "API_TOKEN"):
        if not app.config.get(key):
            if not stored.get(key):
                stored[key] = secrets.token_urlsafe(32)
                changed = True
            app.config[key] = stored[key]
    if not app.config.get("ADMIN_PASSWORD"):
        if not stored.get("ADMIN_PASSWORD_HASH"):
            password = secrets.token_urlsafe(12)
            stored["ADMIN_PASSWORD_HASH"] = generate_password_hash(password)
            changed = True
            announce_password(password, secrets_path(app.instance_path))
        app.config["ADMIN_PASSWORD_HASH"] = stored["ADMIN_PASSWORD_HASH"]
    if changed:
        write_private(secrets_path(app.instance_path), json.dumps(stored, indent=2).encode())


def announce_password(password: str, path: str) -> None:
    """Print a generated admin password once; only its hash is kept."""
    print(
        f"geekai: generated admin password: {password}\n"
        f"geekai: it is shown only this once (its hash is in {path}); "
        "set GEEKAI_ADMIN_PASSWORD or delete that file to choose another.",
        file=sys.stderr,
        flush=True,
    )
