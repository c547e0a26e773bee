"""The wxpy session cache: private, ours, and an itchat session before anything unpickles it."""
from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import stat
import time
from types import SimpleNamespace

from ..file_modes import tighten

logger = logging.getLogger(__name__)


def prepare_cache(path: str) -> str:
    """Make sure the session cache is ours and private before itchat unpickles or writes it.

    Returns why a cache that was there cannot be used ("" when it can, or there was none);
    such a cache is moved aside (kept 0600) and the login asks for a QR.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        # Created empty with 0600 so that itchat's open('wb') keeps the mode; an empty file
        # reads as "no cache" and itchat falls back to a QR.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return ""
    unsafe = (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
              or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    # Unpickling a file others can write would run their code in this process; a file that
    # is not an itchat session would make itchat fail on every attempt instead of asking a QR.
    problem = "not private" if unsafe else cache_problem(path)
    if problem:
        aside = f"{path}.{problem.split()[0]}-{int(time.time())}"
        shutil.move(path, aside)
        tighten(aside)  # it still holds a session: private, whatever mode it had
        logger.warning("session cache %s is %s; moved to %s, a QR login follows", path, problem, aside)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return f"the saved session {problem}, so it was set aside"
    tighten(path)
    return ""


class _SessionUnpickler(pickle.Unpickler):
    """Loads only what itchat pickles: dicts, lists, strings and numbers (a real cache holds no
    class at all). Each global is looked up as an exact (module, name) pair: a dotted name such
    as ("itchat.utils", "os.system") would otherwise reach any attribute of an allowed module."""

    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a session cache")


# Protocols 0-2 name builtins "__builtin__" (Python 2's module); those are mapped on lookup.
SAFE_GLOBALS = frozenset((module, name) for module in ("builtins", "__builtin__")
                         for name in ("dict", "list", "set", "frozenset", "object")) | {
    ("collections", "OrderedDict"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("wxpy.utils.puid_map", "TwoWayDict")}  # wxpy's puid map (Bot.enable_puid) pickles these


def safe_load(handle):
    """pickle.load restricted to SAFE_GLOBALS."""
    return _SessionUnpickler(handle).load()


def safe_loads(data: bytes):
    return safe_load(io.BytesIO(data))


# Stands in for the `pickle` module of itchat's hot reload and wxpy's puid map (wxpy_patches), so
# that every load of a cache, theirs included, goes through the restricted unpickler.
RESTRICTED_PICKLE = SimpleNamespace(load=safe_load, loads=safe_loads, dump=pickle.dump, dumps=pickle.dumps,
                                    UnpicklingError=pickle.UnpicklingError, HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL)


def cache_problem(path: str) -> str:
    """Why the session cache cannot be used, or "" when it looks like an itchat session."""
    if os.path.getsize(path) == 0:
        return ""
    try:
        with open(path, "rb") as handle:
            status = safe_load(handle)
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(status, dict) or not {"version", "loginInfo", "cookies", "storage"} <= set(status):
        return "unreadable (not an itchat session)"
    return ""


