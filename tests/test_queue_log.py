"""waitress's "Task queue depth" warnings: through its own logger, one line a minute at most, and
only while the queue stays deep."""
from __future__ import annotations

import logging
import threading
import time

import pytest
from waitress.task import ThreadedTaskDispatcher

from geekai import logs


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Blocking:
    """A waitress task that holds its thread until released."""

    def __init__(self, release: threading.Event):
        self.release = release

    def service(self):
        self.release.wait(30)

    def cancel(self):
        pass

    def defer(self):
        pass


@pytest.fixture
def queue_filter():
    installed = logs.quiet_queue_warnings()
    assert logs.quiet_queue_warnings() is installed, "installed once"
    clock = Clock()
    installed.clock = clock
    installed.reset()
    yield installed, clock
    installed.clock = time.monotonic
    installed.reset()


@pytest.fixture
def busy_server():
    """waitress's real dispatcher with its one thread busy: each task added waits, and warns."""
    release = threading.Event()
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(1)
    dispatcher.add_task(Blocking(release))
    yield lambda: dispatcher.add_task(Blocking(release))
    release.set()
    dispatcher.shutdown(timeout=5)


def queue_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == logs.QUEUE_LOGGER]


def test_a_short_burst_logs_nothing(queue_filter, busy_server, caplog):
    _, clock = queue_filter
    caplog.set_level(logging.WARNING)
    for _ in range(50):
        busy_server()
        clock.now += 0.1        # five seconds of queued requests, then the queue drains
    assert queue_lines(caplog) == []


def test_a_queue_that_stays_deep_logs_one_line_a_minute_with_its_depth(queue_filter, busy_server, caplog):
    _, clock = queue_filter
    caplog.set_level(logging.WARNING)
    for _ in range(1800):       # three minutes deep, a request queued every 0.1 s
        busy_server()
        clock.now += 0.1
    lines = queue_lines(caplog)
    assert len(lines) == 3, lines
    assert lines[0].startswith("Task queue depth is ") and "deep for 10 s" in lines[0]
    deepest = int(lines[-1].split("deepest ")[1].split(",")[0])
    assert deepest >= 1000, "the depth is the real queue's, which kept growing"


def test_after_the_queue_drains_the_count_starts_over(queue_filter, busy_server, caplog):
    _, clock = queue_filter
    caplog.set_level(logging.WARNING)
    for _ in range(200):        # 20 s deep: one line
        busy_server()
        clock.now += 0.1
    clock.now += 120            # drained, quiet for two minutes
    for _ in range(50):         # a new short burst
        busy_server()
        clock.now += 0.1
    assert len(queue_lines(caplog)) == 1


def test_other_waitress_warnings_pass(queue_filter, caplog):
    caplog.set_level(logging.WARNING)
    logging.getLogger(logs.QUEUE_LOGGER).warning("something else %s", "happened")
    assert queue_lines(caplog) == ["something else happened"]
