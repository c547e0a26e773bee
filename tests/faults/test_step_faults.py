"""Hang, garbage and 5xx at each step of a web-WeChat login, and at synccheck/webwxsync while
online: the bot says what failed, recovers once WeChat answers again, and loses nothing."""
from __future__ import annotations

import pytest

from geekai.bot import states

from harness import case  # noqa: F401 - the fixture

CGI = "/cgi-bin/mmwebwx-bin/"
BEFORE_SCAN = {"jslogin": "/jslogin", "login poll": CGI + "login"}
AFTER_CONFIRM = {"webwxnewloginpage": "webwxnewloginpage", "webwxinit": "webwxinit",
                 "statusnotify": "webwxstatusnotify", "getcontact": "webwxgetcontact"}
MODES = ("hang", "garbage", "5xx")

# The reason each failure must show. A login step whose hang ends the attempt names the time it
# waited; bad answers name the step and what came back.
LOGIN_REASONS = {
    ("hang", "jslogin"): "did not answer /jslogin within 2 s",
    ("garbage", "jslogin"): "unexpected answer from WeChat for /jslogin",
    ("5xx", "jslogin"): "WeChat answered HTTP 503 for /jslogin",
    ("hang", "login poll"): "did not answer /cgi-bin/mmwebwx-bin/login within 2 s",
    ("garbage", "login poll"): "unexpected answer from WeChat for /cgi-bin/mmwebwx-bin/login",
    ("5xx", "login poll"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/login",
    ("hang", "webwxnewloginpage"): "did not answer /cgi-bin/mmwebwx-bin/webwxnewloginpage within 2 s",
    ("garbage", "webwxnewloginpage"): "unexpected login page from WeChat",
    ("5xx", "webwxnewloginpage"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxnewloginpage",
    ("hang", "webwxinit"): "did not answer /cgi-bin/mmwebwx-bin/webwxinit within 2 s",
    ("garbage", "webwxinit"): "unexpected answer from WeChat",
    ("5xx", "webwxinit"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxinit",
    ("hang", "statusnotify"): "did not answer /cgi-bin/mmwebwx-bin/webwxstatusnotify within 2 s",
    ("hang", "getcontact"): "did not answer /cgi-bin/mmwebwx-bin/webwxgetcontact within 2 s",
    ("garbage", "getcontact"): "unexpected answer from WeChat",
    ("5xx", "getcontact"): "WeChat answered HTTP 503 for /cgi-bin/mmwebwx-bin/webwxgetcontact",
}
# The phone's "logged in on the web" notice is optional: itchat logs in without its answer.
TOLERATED = {("garbage", "statusnotify"), ("5xx", "statusnotify")}


def bring_login_to(case, step: str, mode: str) -> int:
    """Start the service and bring a login to `step`, then set the fault there; return the mark."""
    case.start()
    case.wait_state(states.WAITING_FOR_SCAN)
    mark = case.mark()
    if step in BEFORE_SCAN:
        case.emulator.set_fault(mode, {BEFORE_SCAN[step]})
        if step == "jslogin":
            case.emulator.expire_qr()  # the next QR needs a new uuid from /jslogin
    else:
        case.emulator.scan()
        case.wait_state(states.WAITING_FOR_CONFIRM)
        case.emulator.set_fault(mode, {AFTER_CONFIRM[step]})
        case.emulator.confirm()
    return mark


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", list(BEFORE_SCAN) + list(AFTER_CONFIRM))
def test_fault_at_a_login_step(case, step, mode):
    mark = bring_login_to(case, step, mode)
    if (mode, step) in TOLERATED:
        state = case.wait_state(states.LOGGED_IN)
        assert state["account"] == case.emulator.nickname
        case.emulator.set_fault(None)
    else:
        failed = case.wait_event(mark, lambda e: e["to"] == states.RETRYING)
        assert LOGIN_REASONS[(mode, step)] in failed["reason"], failed
        assert case.bot()["state"] in (states.RETRYING, states.STARTING, states.WAITING_FOR_SCAN)
        case.emulator.set_fault(None)
        case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()
