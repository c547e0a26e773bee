"""The database locked for 10 s, 50 failure cycles in one process (threads, file descriptors and
memory sampled, with bounds), and a burst of 500 messages with 50 receipts."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from geekai import states

from conftest import wait_for
from harness import case  # noqa: F401 - the fixture

BOTH = pytest.mark.parametrize("case", ["wxpy", "ilink"], indirect=True)
LOCKED_SECONDS = 10


def hold_the_database(path, seconds: float) -> threading.Event:
    """Another program takes SQLite's write lock for `seconds`; the event is set once it holds it."""
    held = threading.Event()

    def hold():
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(seconds)
            connection.execute("COMMIT")
        finally:
            connection.close()

    threading.Thread(target=hold, name="db-locker", daemon=True).start()
    assert held.wait(10), "could not lock the database"
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")  # no writer gets in: the fault is real
    other.close()
    return held


@BOTH
def test_database_locked_for_10_s(case):
    case.start()
    case.log_in_by_scan()
    case.check_delivery()
    mark = case.mark()
    began = time.monotonic()
    hold_the_database(case.instance / "geekai.sqlite", LOCKED_SECONDS)
    # While it is locked: messages (and receipts) arrive, and the phone logs out (a transition).
    case.send_text(3)
    if case.phone.receipts:
        case.send_receipt()
    time.sleep(1)
    assert case.phone.log_out_on_the_phone()
    time.sleep(max(0.0, LOCKED_SECONDS - (time.monotonic() - began)))
    # Released: the logout and the fresh QR are recorded, nothing sent meanwhile was lost.
    left = case.wait_event(mark, lambda e: e["from"] == states.LOGGED_IN)
    assert left["reason"], left
    case.log_in_by_scan()
    case.wait_delivered()
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_50_failure_cycles_leak_nothing(case):
    case.start(WATCHDOG_SECONDS=30)
    case.log_in_by_scan()
    samples = []
    for cycle in range(50):
        mark = case.mark()
        # One bad answer at the long-poll: the bot leaves logged_in and comes back without a scan.
        case.emulator.set_fault("5xx", {case.phone.online_path}, times=1)
        case.wait_event(mark, lambda e: e["from"] == states.LOGGED_IN)
        case.wait_event(mark, lambda e: e["to"] == states.LOGGED_IN)
        if cycle % 5 == 4:
            samples.append(case.proc_sample())
    assert _logins_by_qr(case) == 1, "a cycle needed a new scan"
    case.check_delivery()
    # Bounds: after the first ten cycles (everything imported, pools at their size) nothing grows.
    # The last session's predecessors may still be closing: give them a few seconds to finish.
    base = samples[1]

    def within_bounds():
        last = case.proc_sample()
        samples.append(last)
        return (last["threads"] <= base["threads"] + 2 and last["fds"] <= base["fds"] + 5
                and last["rss_kb"] <= base["rss_kb"] + 20 * 1024)

    assert wait_for(within_bounds, 10, 0.5), samples
    events = case.check_history()
    assert sum(1 for e in events if e["from"] == states.LOGGED_IN) >= 50
    case.finish()


def _logins_by_qr(case) -> int:
    if case.phone.name == "wxpy":
        return case.emulator.request_counts["/jslogin"]
    return len(case.emulator.tokens_issued)


@BOTH
def test_a_burst_of_500_messages_and_50_receipts(case):
    case.start()
    case.log_in_by_scan()
    with case.emulator._cond:  # all queued before the bot can fetch any
        for n in range(500):
            case.send_text()
            if case.phone.receipts and n % 10 == 0:
                case.send_receipt()
    case.wait_delivered(timeout=120)
    assert case.bot()["state"] == states.LOGGED_IN
    case.check_delivery()
    case.check_history()
    case.finish()
