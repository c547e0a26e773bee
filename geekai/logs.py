"""Logging for the entry points (app.py, geekai.wsgi): one line per record, libraries kept quiet
(waitress's queue-depth warnings only when the queue stays deep)."""
from __future__ import annotations

import logging
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure() -> None:
    """INFO and up to stderr, unless the host (gunicorn, a test) set logging up already; no
    credential in any line (geekai/redaction.py)."""
    from .redaction import install_log_filter

    logging.basicConfig(level=logging.INFO, format=FORMAT)
    install_log_filter()
    quiet_queue_warnings()
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# waitress warns "Task queue depth is N" for every request that waits for a thread: under a burst,
# nearly every line of the log. A line gets through only when the queue stays deep.
QUEUE_LOGGER = "waitress.queue"
DEEP_FOR_SECONDS = 10.0    # warnings without a pause this long: the queue stays deep
DRAINED_AFTER_SECONDS = 2.0  # no warning for this long: the queue drained, the count starts over
LOG_EVERY_SECONDS = 60.0


class QueueDepthFilter(logging.Filter):
    """At most one queue-depth line per LOG_EVERY_SECONDS, and only once the queue stayed deep for
    DEEP_FOR_SECONDS; it tells the depth now, the deepest since the last line and for how long."""

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self.clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the queue seen so far."""
        self._deep_since = self._last_seen = self._last_logged = None
        self._deepest = self._waits = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Task queue depth"):
            return True
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else 0
        now = self.clock()
        with self._lock:
            if self._last_seen is None or now - self._last_seen > DRAINED_AFTER_SECONDS:
                self._deep_since = now
            self._last_seen = now
            self._deepest, self._waits = max(self._deepest, depth), self._waits + 1
            if now - self._deep_since < DEEP_FOR_SECONDS or \
                    (self._last_logged is not None and now - self._last_logged < LOG_EVERY_SECONDS):
                return False
            record.msg = ("Task queue depth is %d (deepest %d, %d requests waited for a thread; "
                          "deep for %.0f s; at most one such line a minute)")
            record.args = (depth, self._deepest, self._waits, now - self._deep_since)
            self._last_logged, self._deepest, self._waits = now, 0, 0
            return True


def quiet_queue_warnings() -> QueueDepthFilter:
    """Install the filter on waitress's queue logger, once; the filter in place."""
    queue_logger = logging.getLogger(QUEUE_LOGGER)
    for existing in queue_logger.filters:
        if isinstance(existing, QueueDepthFilter):
            return existing
    installed = QueueDepthFilter()
    queue_logger.addFilter(installed)
    return installed
