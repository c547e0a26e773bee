"""Hang, garbage and 5xx at the long-poll while logged in (web WeChat's synccheck, iLink's
getupdates): the bot leaves logged_in with a reason naming the fault, comes back by itself once
the server answers again, and the messages sent during the fault arrive after it."""
from __future__ import annotations

import pytest

from geekai import states

from harness import case  # noqa: F401 - the fixture

# What the bot must say when it leaves logged_in, by backend and mode.
REASONS = {
    ("wxpy", "hang"): "watchdog: no sync with WeChat",
    ("wxpy", "garbage"): "unexpected synccheck answer (HTTP 200)",
    ("wxpy", "5xx"): "unexpected synccheck answer (HTTP 503)",
    ("ilink", "hang"): "watchdog: no answer from iLink",
    ("ilink", "garbage"): "unexpected answer from iLink for getupdates",
    ("ilink", "5xx"): "iLink answered HTTP 503 for getupdates",
}


@pytest.mark.parametrize("case", ["wxpy", "ilink"], indirect=True)
def test_hang_garbage_and_5xx_at_the_long_poll(case):
    # A hung long-poll is the watchdog's to find: 3 s of silence here (45 s by default).
    case.start(WATCHDOG_SECONDS=3)
    case.wait_state(states.WAITING_FOR_SCAN)
    case.log_in_by_scan()
    case.check_delivery()
    for mode in ("hang", "garbage", "5xx"):
        mark = case.mark()
        case.emulator.set_fault(mode, {case.phone.online_path})
        left = case.wait_event(mark, lambda e: e["from"] == states.LOGGED_IN)
        assert REASONS[(case.phone.name, mode)] in left["reason"], (mode, left)
        case.send_text(2)  # sent while the bot cannot fetch them
        case.emulator.set_fault(None)
        state = case.wait_state(states.LOGGED_IN, states.WAITING_FOR_SCAN)
        if state["state"] == states.WAITING_FOR_SCAN:
            pytest.fail(f"{mode} at {case.phone.online_path} cost the session: {case.since(mark)}")
        case.check_delivery()
    case.check_history()
    case.finish()
