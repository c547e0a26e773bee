"""The message ids a bot handed to the handlers lately, so that a redelivered one is dropped.

Web WeChat sends again what a SyncKey has not acknowledged: a session restored from the cache
(after a failed sync, a watchdog restart) presents the key of its last save and gets the messages
since then once more. The supervisor keeps the ids across the sessions of its process.
"""
from __future__ import annotations

import collections
import threading

KEEP = 10000  # far more than one sync round can redeliver


class RecentIds:
    """A bounded set of the ids seen last; thread-safe."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, message_id: str) -> bool:
        """Record the id; False when it was seen already (an empty id is never a repeat)."""
        if not message_id:
            return True
        with self._lock:
            if message_id in self._ids:
                return False
            self._ids[message_id] = None
            if len(self._ids) > self.keep:
                self._ids.popitem(last=False)
            return True
