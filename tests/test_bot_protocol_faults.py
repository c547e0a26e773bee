"""Every wait on WeChat is bounded and every bad answer classified, at each step of the login."""
from __future__ import annotations

import os
import threading
from datetime import datetime

import pytest

from conftest import wait_for, wait_for_state

BEFORE_SCAN = ["/jslogin", "/cgi-bin/mmwebwx-bin/login"]
AFTER_CONFIRM = ["webwxnewloginpage", "webwxinit", "webwxstatusnotify", "webwxgetcontact"]


def history(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def seconds_between(earlier, later):
    parse = lambda e: datetime.fromisoformat(e["at"][:-1])  # noqa: E731
    return (parse(later) - parse(earlier)).total_seconds()


def drive_to(step, client, auth, emulator):
    """Bring the login up to the step where the fault is set."""
    if step in AFTER_CONFIRM:
        wait_for_state(client, auth, "waiting_for_scan")
        emulator.scan()
        wait_for_state(client, auth, "waiting_for_confirm")
        emulator.set_fault("hang", {step})
        emulator.confirm()
    else:
        emulator.set_fault("hang", {step})


@pytest.mark.parametrize("step", BEFORE_SCAN + AFTER_CONFIRM)
def test_hang_at_each_step_ends_at_login_timeout(make_app, run_bot, auth, emulator, step):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_LOGIN_TIMEOUT=1, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    drive_to(step, client, auth, emulator)
    state = wait_for_state(client, auth, "retrying", timeout=8)
    # The reason names the step, also where itchat swallows the timeout (the contact list).
    assert f"did not answer /cgi-bin/mmwebwx-bin/{step.strip('/').split('/')[-1]}" in state["reason"] \
        or f"did not answer {step}" in state["reason"], state["reason"]
    events = history(client, auth)
    failed = events[0]
    previous = events[1]
    # The attempt ended about one BOT_LOGIN_TIMEOUT after the last answer from WeChat.
    assert seconds_between(previous, failed) < 3
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("mode, step, expected", [
    ("5xx", "/jslogin", "HTTP 503"),
    ("garbage", "/jslogin", "unexpected answer"),
    ("drop", "/jslogin", "lost the connection"),
    ("garbage", "/cgi-bin/mmwebwx-bin/login", "unexpected answer"),
    ("5xx", "/cgi-bin/mmwebwx-bin/login", "HTTP 503"),
])
def test_bad_answers_before_scan_are_transient(make_app, run_bot, auth, emulator, mode, step, expected):
    emulator.set_fault(mode, {step})
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying")
    assert expected in state["reason"], state["reason"]
    assert state["next_retry_at"] and state["attempt"] == 1


@pytest.mark.parametrize("mode, step, expected", [
    ("5xx", "webwxinit", "HTTP 503 for /cgi-bin/mmwebwx-bin/webwxinit"),
    ("garbage", "webwxinit", "unexpected answer from WeChat"),
    ("drop", "webwxstatusnotify", "lost the connection to WeChat during login"),
    ("garbage", "webwxnewloginpage", "unexpected login page from WeChat"),
    ("5xx", "webwxnewloginpage", "HTTP 503 for /cgi-bin/mmwebwx-bin/webwxnewloginpage"),
    # itchat reads the error page as JSON: the reason is still the HTTP error, not a parse error.
    ("5xx", "webwxgetcontact", "HTTP 503 for /cgi-bin/mmwebwx-bin/webwxgetcontact"),
])
def test_bad_answers_after_confirm_are_transient(make_app, run_bot, auth, emulator, mode, step, expected):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    emulator.scan()
    wait_for_state(client, auth, "waiting_for_confirm")
    emulator.set_fault(mode, {step})
    emulator.confirm()
    state = wait_for_state(client, auth, "retrying")
    assert expected in state["reason"], state["reason"]


def test_retry_recovers_when_wechat_comes_back(make_app, run_bot, auth, emulator):
    emulator.set_fault("5xx", {"/jslogin"})
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "retrying")
    emulator.set_fault(None)
    state = wait_for_state(client, auth, "waiting_for_scan")
    assert state["attempt"] >= 1


def test_watchdog_restarts_a_bot_whose_sync_hangs(make_app, run_bot, auth, emulator):
    from conftest import log_in_by_scan

    app = make_app(WECHAT_BASE_URL=emulator.base_url, WATCHDOG_SECONDS=1, BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    runtime = run_bot(app)
    log_in_by_scan(client, auth, emulator)
    emulator.set_fault("hang", {"synccheck"})
    state = wait_for_state(client, auth, "retrying", "starting", timeout=8)
    assert state["reason"].startswith("watchdog: no sync with WeChat")
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert left["actor"] == "watchdog"
    emulator.set_fault(None)
    state = wait_for_state(client, auth, "logged_in", timeout=8)
    assert runtime.supervisor.stats["watchdog_restarts"] >= 1
    assert emulator.request_counts["/jslogin"] == 1, "the watchdog's restart should log in from the cache"


def _open_fds(app) -> int:
    """Open file descriptors, without the database pool's idle connections: the jobs that happen to
    run at once grow the pool to a fixed size, which is no leak."""
    from geekai.db import db

    with app.app_context():
        db.engine.dispose()
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    """Threads, without the scheduler's worker pool: its threads start as jobs happen to overlap,
    up to its fixed size (checked apart), which is no leak."""
    pool = [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    assert len(pool) <= 4 * len({t.name.rsplit("_", 1)[0] for t in pool}), pool
    return threading.active_count() - len(pool)


def test_failed_attempts_leak_nothing(make_app, run_bot, auth, emulator):
    import itchat

    emulator.set_fault("5xx", {"webwxinit"})
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=0.05, BOT_RETRY_MAX_SECONDS=0.1)
    client = app.test_client()
    run_bot(app)

    def fail_once(n):
        wait_for_state(client, auth, "waiting_for_scan")
        emulator.confirm()
        assert wait_for(lambda: len([e for e in history(client, auth) if e["to"] == "retrying"]) >= n)

    fail_once(1)
    instances, threads, fds = len(itchat.instanceList), _threads(), _open_fds(app)
    for n in range(2, 22):
        fail_once(n)
    # The last session's cleanup (its inbox, its itchat instance, its sockets) ends just after the
    # state is recorded: wait for it rather than racing it, then bound what is left.
    assert wait_for(lambda: len(itchat.instanceList) <= instances, timeout=10), len(itchat.instanceList)
    assert wait_for(lambda: _threads() <= threads + 2, timeout=5), threading.enumerate()
    assert wait_for(lambda: _open_fds(app) <= fds + 5, timeout=10), (_open_fds(app), fds)


def test_login_logout_cycles_leak_nothing(bot_app, run_bot, auth, emulator):
    import itchat
    from conftest import log_in_by_scan

    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    baseline = len(itchat.instanceList), _threads(), _open_fds(bot_app)
    for _ in range(10):
        emulator.logout()
        log_in_by_scan(client, auth, emulator)
    assert wait_for(lambda: len(itchat.instanceList) <= baseline[0], timeout=10), len(itchat.instanceList)
    assert wait_for(lambda: _threads() <= baseline[1] + 2, timeout=5), threading.enumerate()
    assert wait_for(lambda: _open_fds(bot_app) <= baseline[2] + 5, timeout=10), (_open_fds(bot_app), baseline)


def test_watchdog_restarts_a_bot_whose_listener_died(make_app, run_bot, auth, emulator):
    from conftest import log_in_by_scan

    app = make_app(WECHAT_BASE_URL=emulator.base_url, WATCHDOG_SECONDS=30, BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    runtime = run_bot(app)
    log_in_by_scan(client, auth, emulator)
    bot = runtime.supervisor.session.bot
    bot.is_listening = False  # the listener thread ends without any callback, as a crash would
    bot.listening_thread.join(5)
    assert wait_for(lambda: any(e["actor"] == "watchdog" for e in history(client, auth)), timeout=10), \
        history(client, auth)[:3]
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert left["actor"] == "watchdog" and "listener thread died" in left["reason"]
    wait_for_state(client, auth, "logged_in", timeout=8)


@pytest.mark.parametrize("mode, step", [("5xx", "webwxstatusnotify"), ("drop", "webwxgetcontact")])
def test_server_without_optional_steps_still_logs_in(make_app, run_bot, auth, emulator, mode, step):
    """itchat tolerates a failing status notify and a lost contact request; so must the bounds around it."""
    from conftest import log_in_by_scan

    emulator.set_fault(mode, {step})
    app = make_app(WECHAT_BASE_URL=emulator.base_url)
    client = app.test_client()
    run_bot(app)
    state = log_in_by_scan(client, auth, emulator)
    assert state["account"] == "GeekAI测试号"


def test_account_refused_by_web_wechat_waits_for_a_person(make_app, run_bot, auth, emulator):
    """WeChat answers the confirmed login with ret 1203 for accounts it keeps off the web: no loop."""
    emulator.refuse_login(1203)
    app = make_app(WECHAT_BASE_URL=emulator.base_url)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    emulator.confirm()
    state = wait_for_state(client, auth, "needs_login")
    assert "refused the web login for this account (ret 1203)" in state["reason"]
    assert "暂时不能登录web微信" in state["reason"]
    polls = emulator.request_counts["/jslogin"]
    assert not wait_for(lambda: emulator.request_counts["/jslogin"] > polls, timeout=1), "it kept trying"


def test_a_session_restored_from_the_cache_hands_nothing_over_twice(make_app, run_bot, auth, emulator):
    """After a bad synccheck the bot logs in again from the cache, whose SyncKey is the one saved
    at the login: WeChat sends what came since once more, and the bot drops those it handed over."""
    from conftest import log_in_by_scan
    from geekai.jobs import register_message_handler

    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=0.2)
    client = app.test_client()
    received = []
    register_message_handler(app, lambda message: received.append(message.text))
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    emulator.send_text("before the fault")
    assert wait_for(lambda: received == ["before the fault"])
    assert emulator.unacknowledged_messages == 1  # no later SyncKey has confirmed it yet
    emulator.set_fault("garbage", {"synccheck"}, times=1)
    assert wait_for(lambda: any(e["from"] == "logged_in" for e in history(client, auth)))
    wait_for_state(client, auth, "logged_in")
    emulator.send_text("after the fault")
    assert wait_for(lambda: len(received) >= 2)
    assert received == ["before the fault", "after the fault"]
    assert emulator.request_counts["/jslogin"] == 1  # restored from the cache, no new QR
