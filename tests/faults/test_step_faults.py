"""Hang, garbage and 5xx at each step of a login, and at the long-poll while online, on both
backends: the bot says what failed, recovers once WeChat answers again (without a restart), and
loses no message, receipt or transition.

One app.py process per step: the three modes play out one after the other in it, each ending
logged in with a message (and on web WeChat a receipt) delivered, so each mode also proves the
recovery from the one before.
"""
from __future__ import annotations

import pytest

from geekai import states

from harness import case  # noqa: F401 - the fixture

CGI = "/cgi-bin/mmwebwx-bin/"
MODES = ("hang", "garbage", "5xx")

# (backend, step): (the path the fault is set on, whether it comes after the phone's confirm)
STEPS = {
    ("wxpy", "jslogin"): ("/jslogin", False),
    ("wxpy", "login-poll"): (CGI + "login", False),
    ("wxpy", "webwxnewloginpage"): ("webwxnewloginpage", True),
    ("wxpy", "webwxinit"): ("webwxinit", True),
    ("wxpy", "webwxstatusnotify"): ("webwxstatusnotify", True),
    ("wxpy", "webwxgetcontact"): ("webwxgetcontact", True),
    ("ilink", "get_bot_qrcode"): ("get_bot_qrcode", False),
    ("ilink", "get_qrcode_status"): ("get_qrcode_status", False),
    ("ilink", "confirmed-poll"): ("get_qrcode_status", True),
    ("ilink", "notifystart"): ("msg/notifystart", True),
}
# Steps after which the login is saved (iLink's bot token): the retry needs no new scan.
SAVED_BEFORE = {("ilink", "notifystart")}

# The reason each failure must show: a hang names the step and the time waited (BOT_LOGIN_TIMEOUT
# is 2 s in the suite); a bad answer names the step and what came back.
LOGIN_REASONS = {
    ("wxpy", "jslogin", "hang"): "did not answer /jslogin within 2 s",
    ("wxpy", "jslogin", "garbage"): "unexpected answer from WeChat for /jslogin",
    ("wxpy", "jslogin", "5xx"): "WeChat answered HTTP 503 for /jslogin",
    ("wxpy", "login-poll", "hang"): "did not answer /cgi-bin/mmwebwx-bin/login within 2 s",
    ("wxpy", "login-poll", "garbage"): "unexpected answer from WeChat for /cgi-bin/mmwebwx-bin/login",
    ("wxpy", "login-poll", "5xx"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/login",
    ("wxpy", "webwxnewloginpage", "hang"): "did not answer /cgi-bin/mmwebwx-bin/webwxnewloginpage within 2 s",
    ("wxpy", "webwxnewloginpage", "garbage"): "unexpected login page from WeChat",
    ("wxpy", "webwxnewloginpage", "5xx"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxnewloginpage",
    ("wxpy", "webwxinit", "hang"): "did not answer /cgi-bin/mmwebwx-bin/webwxinit within 2 s",
    ("wxpy", "webwxinit", "garbage"): "unexpected answer from WeChat",
    ("wxpy", "webwxinit", "5xx"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxinit",
    ("wxpy", "webwxstatusnotify", "hang"): "did not answer /cgi-bin/mmwebwx-bin/webwxstatusnotify within 2 s",
    ("wxpy", "webwxgetcontact", "hang"): "did not answer /cgi-bin/mmwebwx-bin/webwxgetcontact within 2 s",
    ("wxpy", "webwxgetcontact", "garbage"): "unexpected answer from WeChat",
    ("wxpy", "webwxgetcontact", "5xx"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxgetcontact",
    ("ilink", "get_bot_qrcode", "hang"): "iLink did not answer get_bot_qrcode within 2 s",
    ("ilink", "get_bot_qrcode", "garbage"): "unexpected answer from iLink for get_bot_qrcode",
    ("ilink", "get_bot_qrcode", "5xx"): "iLink answered HTTP 503 for get_bot_qrcode",
    ("ilink", "get_qrcode_status", "hang"): "iLink did not answer get_qrcode_status within 2 s",
    ("ilink", "get_qrcode_status", "garbage"): "unexpected answer from iLink for get_qrcode_status",
    ("ilink", "get_qrcode_status", "5xx"): "iLink answered HTTP 503 for get_qrcode_status",
    ("ilink", "confirmed-poll", "hang"): "iLink did not answer get_qrcode_status within 2 s",
    ("ilink", "confirmed-poll", "garbage"): "unexpected answer from iLink for get_qrcode_status",
    ("ilink", "confirmed-poll", "5xx"): "iLink answered HTTP 503 for get_qrcode_status",
    ("ilink", "notifystart", "hang"): "iLink did not answer msg/notifystart within 2 s",
    ("ilink", "notifystart", "garbage"): "unexpected answer from iLink for msg/notifystart",
    ("ilink", "notifystart", "5xx"): "iLink answered HTTP 503 for msg/notifystart",
}
# The phone's "logged in on the web" notice is optional: itchat logs in without its answer.
TOLERATED = {("wxpy", "webwxstatusnotify", "garbage"), ("wxpy", "webwxstatusnotify", "5xx")}


def fault_during_login(case, step: str, mode: str) -> int:
    """From waiting_for_scan, set the fault at `step` and bring the login there; return the mark."""
    path, after_confirm = STEPS[(case.phone.name, step)]
    case.wait_state(states.WAITING_FOR_SCAN)
    mark = case.mark()
    if after_confirm:
        case.phone.scan()
        case.wait_state(states.WAITING_FOR_CONFIRM)
        case.emulator.set_fault(mode, {path})
        case.phone.confirm()
    elif path in ("/jslogin", "get_bot_qrcode"):
        case.emulator.set_fault(mode, {path})
        case.phone.expire_qr()  # the next QR needs a new one from this step
    else:
        case.emulator.set_fault(mode, {path})
    return mark


@pytest.mark.parametrize("case, step", [(backend, step) for backend, step in STEPS],
                         indirect=["case"], ids=[f"{b}-{s}" for b, s in STEPS])
def test_hang_garbage_and_5xx_at_a_login_step(case, step):
    case.start()
    for mode in MODES:
        key = (case.phone.name, step, mode)
        mark = fault_during_login(case, step, mode)
        if key in TOLERATED:
            state = case.wait_state(states.LOGGED_IN)
            case.emulator.set_fault(None)
        else:
            failed = case.wait_event(mark, lambda e: e["to"] == states.RETRYING)
            assert LOGIN_REASONS[key] in failed["reason"], (mode, failed)
            case.emulator.set_fault(None)
            if (case.phone.name, step) in SAVED_BEFORE:
                state = case.wait_state(states.LOGGED_IN)
            else:
                state = case.log_in_by_scan()
        assert state["account"], state
        case.check_delivery()
        # The phone logs out: a fresh QR, from which the next mode starts.
        assert case.phone.log_out_on_the_phone()
        case.wait_state(states.WAITING_FOR_SCAN)
    case.check_history()
    case.finish()
