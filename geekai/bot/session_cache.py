"""The wxpy session cache: private, ours, and an itchat session before anything unpickles it."""
from __future__ import annotations

import logging
import os
import pickle
import shutil
import stat
import time

logger = logging.getLogger(__name__)


def prepare_cache(path: str) -> None:
    """Make sure the session cache is ours and private before itchat unpickles or writes it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        # Created empty with 0600 so that itchat's open('wb') keeps the mode; an empty file
        # reads as "no cache" and itchat falls back to a QR.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    unsafe = (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
              or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    # Unpickling a file others can write would run their code in this process; a file that
    # is not an itchat session would make itchat fail on every attempt instead of asking a QR.
    problem = "not private" if unsafe else cache_problem(path)
    if problem:
        aside = f"{path}.{problem.split()[0]}-{int(time.time())}"
        shutil.move(path, aside)
        logger.warning("session cache %s is %s; moved to %s, a QR login follows", path, problem, aside)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        os.chmod(path, 0o600)


class _SessionUnpickler(pickle.Unpickler):
    """Loads only what itchat pickles: plain data and itchat's own storage classes."""

    def find_class(self, module, name):
        if module.split(".")[0] == "itchat" or (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a session cache")


_SAFE_GLOBALS = {("builtins", "dict"), ("builtins", "list"), ("builtins", "set"),
                 ("collections", "OrderedDict"), ("copy_reg", "_reconstructor"),
                 ("copyreg", "_reconstructor"), ("builtins", "object")}


def cache_problem(path: str) -> str:
    """Why the session cache cannot be used, or "" when it looks like an itchat session."""
    if os.path.getsize(path) == 0:
        return ""
    try:
        with open(path, "rb") as handle:
            status = _SessionUnpickler(handle).load()
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(status, dict) or not {"version", "loginInfo", "cookies", "storage"} <= set(status):
        return "unreadable (not an itchat session)"
    return ""


