"""The iLink backend online, against the fake iLink server: messages to the handlers and replies,
the persisted cursor and message_id dedupe across restarts, send_text, and every online fault."""
from __future__ import annotations

import threading
import time

import pytest

from geekai.bot.errors import SendFailed
from geekai.jobs import register_message_handler

from conftest import ilink_log_in, wait_for, wait_for_state


def history(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def online(make_app, run_bot, auth, emu, **config):
    """An app logged in to `emu`, with a handler that records what it receives."""
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=emu.base_url, **config)
    received = []
    register_message_handler(app, received.append)
    runtime = run_bot(app)
    ilink_log_in(app.test_client(), auth, emu)
    return app, runtime, received


def test_a_text_reaches_the_handlers_and_the_reply_carries_its_context_token(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    runtime.supervisor.handlers.append(lambda message: message.reply(f"echo: {message.text}"))
    sent = ilink.send_text("你好 <b>&</b>", from_user="o9cq80lisi@im.wechat")
    assert wait_for(lambda: ilink.sent, timeout=5), "no reply"
    message = received[0]
    assert (message.type, message.text, message.contact_id, message.sender) == \
        ("Text", "你好 <b>&</b>", "o9cq80lisi@im.wechat", "o9cq80lisi@im.wechat")
    # uint64 above 2**53, kept exact as text (a float would have lost the last digits).
    assert message.id == str(sent["message_id"]) and sent["message_id"] > 2 ** 53
    assert message.raw["message_id"] == message.id
    reply = ilink.sent[0]
    assert reply["ret"] == 0 and reply["msg"]["context_token"] == sent["context_token"]
    assert reply["msg"]["item_list"] == [{"type": 1, "text_item": {"text": "echo: 你好 <b>&</b>"}}]
    assert reply["msg"]["to_user_id"] == "o9cq80lisi@im.wechat"
    # The fake server records the reply before it answers; the bot counts it once the answer is back.
    assert wait_for(lambda: runtime.supervisor.stats["messages_out"] == 1, timeout=5)
    assert runtime.supervisor.stats["messages_in"] == 1
    # Every call carried the required headers and base_info (the fake answers 400 otherwise).
    assert ilink.protocol_errors == []


def test_a_voice_message_passes_its_transcript_and_other_media_their_type(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.inject({"item_list": [{"type": 3, "voice_item": {"text": "语音转文字", "playtime": 1200}}]})
    ilink.inject({"item_list": [{"type": 2, "image_item": {"media": {"encrypt_query_param": "x"}}}]})
    assert wait_for(lambda: len(received) == 2)
    assert [(m.type, m.text) for m in received] == [("Recording", "语音转文字"), ("Picture", "")]


def test_malformed_messages_and_unknown_fields_never_stop_the_loop(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    with ilink._cond:  # all in one getupdates answer
        ilink.inject("not a message at all")
        ilink.inject({"item_list": "garbage", "message_id": "oops", "brand_new_field": {"x": 1}})
        ilink.inject({"message_type": 2, "item_list": [{"type": 1, "text_item": {"text": "the bot's own"}}]})
        ilink.send_text("after the broken ones")
    assert wait_for(lambda: len(received) == 3, timeout=5), [m.type for m in received]
    assert [m.type for m in received] == ["Unreadable", "Unreadable", "Text"]
    assert received[2].text == "after the broken ones"
    ilink.send_text("and the loop is still alive")
    assert wait_for(lambda: len(received) == 4)
    assert app.test_client().get("/api/bot", headers=auth).get_json()["state"] == "logged_in"


def test_a_redelivered_batch_is_not_handed_over_twice(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    for n in range(5):
        ilink.send_text(f"message {n}")
    assert wait_for(lambda: len(received) == 5)
    ilink.replay_from(0)  # the server sends all five again
    ilink.send_text("message 5")
    assert wait_for(lambda: len(received) == 6)
    assert not wait_for(lambda: len(received) > 6, timeout=1)
    assert [m.text for m in received] == [f"message {n}" for n in range(6)]


def test_a_storm_of_500_messages_with_a_restart_in_the_middle_loses_and_repeats_none(make_app, run_bot, auth,
                                                                                     ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    received, halfway = [], threading.Event()

    def slow(message):
        received.append(message.id)
        if len(received) == 150:
            halfway.set()
        time.sleep(0.001)

    register_message_handler(app, slow)
    first = run_bot(app)
    ilink_log_in(app.test_client(), auth, ilink)
    sent = [ilink.send_text(f"storm {n}")["message_id"] for n in range(500)]
    assert halfway.wait(10)
    assert first.shutdown(grace=3)  # mid-batch: the batch's cursor is not saved, part of it was handed over
    stopped_at = len(received)
    assert stopped_at < 500
    again = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    register_message_handler(again, slow)
    run_bot(again)
    assert wait_for(lambda: len(received) >= 500, timeout=30), len(received)
    assert not wait_for(lambda: len(received) > 500, timeout=1)
    assert received == [str(message_id) for message_id in sent]  # each once, in order
    assert len(ilink.tokens_issued) == 1, "the restart used the saved token"


def test_the_cursor_is_stored_after_each_batch(make_app, run_bot, auth, ilink):
    from geekai.db import db
    from geekai.models import IlinkSync

    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("one")
    assert wait_for(lambda: received)

    def stored():
        with app.app_context():
            row = db.session.get(IlinkSync, 1)
            return row.cursor if row else ""

    assert wait_for(lambda: stored() and ilink._position(stored()) == 1)
    assert stored() != ""


def test_stale_token_online_shows_a_fresh_qr_saying_the_session_expired(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    client = app.test_client()
    ilink.expire_session()
    wait_for_state(client, auth, "waiting_for_scan")
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert "the iLink session expired (getupdates answered -14)" in left["reason"]
    assert "scan a new QR" in left["reason"]
    polls = ilink.request_counts["/ilink/bot/getupdates"]
    assert not wait_for(lambda: ilink.request_counts["/ilink/bot/getupdates"] > polls, timeout=1), \
        "the dead token was tried again"
    ilink_log_in(client, auth, ilink)  # a new scan brings the bot back
    assert len(ilink.tokens_issued) == 2


@pytest.mark.parametrize("answer", [{"ret": -14}, {"errcode": -14, "errmsg": "session timeout"}])
def test_stale_token_is_read_from_ret_or_errcode(make_app, run_bot, auth, ilink, answer):
    ilink.expired_answer = answer
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.expire_session()
    wait_for_state(app.test_client(), auth, "waiting_for_scan")


@pytest.mark.parametrize("mode, expected", [
    ("5xx", "iLink answered HTTP 503 for getupdates"),
    ("garbage", "unexpected answer from iLink for getupdates"),
    ("drop", "cannot reach iLink"),
])
def test_a_failing_poll_retries_with_backoff_and_comes_back_without_a_scan(make_app, run_bot, auth, ilink,
                                                                         mode, expected):
    app, runtime, received = online(make_app, run_bot, auth, ilink, BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    ilink.set_fault(mode, {"getupdates"})
    state = wait_for_state(client, auth, "retrying")
    assert expected in state["reason"], state["reason"]
    ilink.set_fault(None)
    wait_for_state(client, auth, "logged_in")
    assert len(ilink.tokens_issued) == 1  # the saved token, no new scan
    ilink.send_text("after the outage")
    assert wait_for(lambda: [m.text for m in received] == ["after the outage"])


def test_a_poll_that_keeps_failing_backs_off_further_each_time(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink, BOT_RETRY_FIRST_SECONDS=0.1,
                                    BOT_RETRY_MAX_SECONDS=30)
    client = app.test_client()
    ilink.set_fault("5xx", {"getupdates"})  # each login works (notifystart), the poll never does
    attempts = set()

    def three():
        state = client.get("/api/bot", headers=auth).get_json()
        if state["state"] == "retrying":
            attempts.add(state["attempt"])
        return len(attempts) >= 3

    assert wait_for(three, timeout=20)
    assert sorted(attempts)[:3] == [1, 2, 3]


def test_a_hung_poll_is_silence_and_the_watchdog_restarts_it(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink, WATCHDOG_SECONDS=1, ILINK_POLL_SECONDS=30,
                                    BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    ilink.announce_poll_timeout = False  # so the client keeps its own (long) wait
    wait_for(lambda: False, timeout=0.5)
    ilink.set_fault("hang", {"getupdates"})
    state = wait_for_state(client, auth, "retrying", "starting", timeout=10)
    assert state["reason"].startswith("watchdog: no answer from iLink"), state["reason"]
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert left["actor"] == "watchdog"
    ilink.set_fault(None)
    wait_for_state(client, auth, "logged_in", timeout=10)
    assert runtime.supervisor.stats["watchdog_restarts"] >= 1
    ilink.send_text("after the hang")
    assert wait_for(lambda: [m.text for m in received] == ["after the hang"], timeout=10)


def test_without_longpolling_timeout_ms_the_poll_is_bounded_by_ilink_poll_seconds(make_app, run_bot, auth):
    from geekai.bot.ilink_emulator import IlinkEmulator

    with IlinkEmulator(qr_poll_hold=0.2, updates_hold=0.3, announce_poll_timeout=False).start() as emu:
        app, runtime, received = online(make_app, run_bot, auth, emu, ILINK_POLL_SECONDS=0.5, BOT_LOGIN_TIMEOUT=1)
        emu.send_text("still delivered")
        assert wait_for(lambda: received)
        emu.set_fault("hang", {"getupdates"})
        polls = emu.request_counts["/ilink/bot/getupdates"]
        # Each hung poll is given up after 0.5 s + the margin, and the next one is sent.
        assert wait_for(lambda: emu.request_counts["/ilink/bot/getupdates"] >= polls + 2, timeout=10)
        emu.set_fault(None)


def test_the_announced_long_poll_replaces_the_default(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink, ILINK_POLL_SECONDS=100)
    assert wait_for(lambda: runtime.supervisor.session.poll_seconds == pytest.approx(0.3))


# -- send_text, for the messages API ------------------------------------------------------------------
def test_send_text_uses_the_last_context_token_of_that_person(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("first")
    second = ilink.send_text("second")
    assert wait_for(lambda: len(received) == 2)
    runtime.supervisor.session.send_text(ilink.default_user, "a notice from the application")
    assert ilink.sent[-1]["ret"] == 0 and ilink.sent[-1]["msg"]["context_token"] == second["context_token"]


def test_send_text_to_someone_who_never_wrote_is_refused_for_good(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    with pytest.raises(SendFailed) as failure:
        runtime.supervisor.session.send_text("o9cq80stranger@im.wechat", "hello")
    assert failure.value.permanent and "never written to the bot" in str(failure.value)
    assert ilink.sent == []


def test_send_text_after_24_hours_is_refused_for_good(make_app, run_bot, auth, ilink):
    from geekai.db import db
    from geekai.models import IlinkContact

    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("hi")

    def stored():
        with app.app_context():
            return db.session.get(IlinkContact, ilink.default_user) is not None

    assert wait_for(stored), "the context token was not stored after the handlers ran"
    runtime.supervisor.session._contexts.clear()  # as after a restart: only the database knows
    with app.app_context():
        row = db.session.get(IlinkContact, ilink.default_user)
        row.last_message_at = row.last_message_at.replace(year=row.last_message_at.year - 1)
        db.session.commit()
    with pytest.raises(SendFailed) as failure:
        runtime.supervisor.session.send_text(ilink.default_user, "too late")
    assert failure.value.permanent and "within about 24 hours" in str(failure.value)


def test_a_send_refused_with_minus_2_says_why_and_counts_as_failed(make_app, run_bot, auth, ilink, caplog):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    failures = []

    def reply(message):
        try:
            message.reply("answer")
        except SendFailed as exc:
            failures.append(exc)

    runtime.supervisor.handlers.append(reply)
    ilink.send_ret = -2
    ilink.send_text("question")
    assert wait_for(lambda: failures)
    assert failures[0].permanent and "ret -2" in str(failures[0]) and "write to the bot again" in str(failures[0])
    assert runtime.supervisor.stats["messages_failed"] == 1 and runtime.supervisor.stats["messages_out"] == 0
    assert "a reply was not sent: iLink refused the message (sendmessage ret -2)" in caplog.text


def test_a_stale_context_token_is_refused_by_ilink_with_minus_2(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("hi")
    assert wait_for(lambda: received)
    ilink.age_contexts(25 * 3600)  # iLink's clock says a day has passed; ours does not know
    with pytest.raises(SendFailed) as failure:
        runtime.supervisor.session.send_text(ilink.default_user, "late")
    assert failure.value.permanent and ilink.sent[-1]["ret"] == -2


def test_send_failures_of_the_transport_are_not_permanent(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("hi")
    assert wait_for(lambda: received)
    ilink.set_fault("5xx", {"sendmessage"})
    with pytest.raises(SendFailed) as failure:
        runtime.supervisor.session.send_text(ilink.default_user, "x")
    assert not failure.value.permanent and "HTTP 503" in str(failure.value)


def test_context_tokens_survive_a_restart(make_app, run_bot, auth, ilink):
    app, first, received = online(make_app, run_bot, auth, ilink)
    sent = ilink.send_text("before the restart")
    assert wait_for(lambda: received)
    first.shutdown(grace=3)
    again = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    runtime = run_bot(again)
    wait_for_state(again.test_client(), auth, "logged_in")
    runtime.supervisor.session.send_text(ilink.default_user, "after the restart")
    assert ilink.sent[-1] == {"msg": ilink.sent[-1]["msg"], "ret": 0}
    assert ilink.sent[-1]["msg"]["context_token"] == sent["context_token"]


def test_send_text_from_many_threads_at_once_while_polling(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("hi")
    assert wait_for(lambda: received)
    session = runtime.supervisor.session
    errors = []

    def send(n):
        try:
            session.send_text(ilink.default_user, f"notice {n}")
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    ilink.send_text("meanwhile")
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(s["msg"]["item_list"][0]["text_item"]["text"] for s in ilink.sent) == \
        sorted(f"notice {n}" for n in range(20))
    assert len({s["msg"]["client_id"] for s in ilink.sent}) == 20
    assert wait_for(lambda: [m.text for m in received][-1] == "meanwhile")


def test_send_text_while_offline_is_not_permanent(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    ilink.send_text("hi")
    assert wait_for(lambda: received)
    session = runtime.supervisor.session
    runtime.supervisor.stop()
    with pytest.raises(SendFailed) as failure:
        session.send_text(ilink.default_user, "x")
    assert not failure.value.permanent and "offline" in str(failure.value)


# -- the same metrics and alerts as wxpy's -----------------------------------------------------------
def test_metrics_follow_the_ilink_bot(make_app, run_bot, auth, ilink):
    from test_metrics import scrape, value

    app, runtime, received = online(make_app, run_bot, auth, ilink)
    client = app.test_client()
    samples = scrape(client)
    assert value(samples, "geekai_bot_state", state="logged_in") == 1
    assert value(samples, "geekai_bot_login_attempts_total", result="success") == 1
    assert 0 <= value(samples, "geekai_bot_last_sync_age_seconds") < 5
    runtime.supervisor.handlers.append(lambda message: message.reply("answer"))
    ilink.send_ret = -2
    ilink.send_text("hello")
    assert wait_for(lambda: value(scrape(client), "geekai_bot_messages_total", direction="failed") == 1)
    samples = scrape(client)
    assert value(samples, "geekai_bot_messages_total", direction="in") == 1
    assert value(samples, "geekai_bot_messages_total", direction="out") == 0


def test_an_expired_session_nobody_scans_again_is_an_incident(make_app, run_bot, auth, ilink, receiver):
    app, runtime, received = online(make_app, run_bot, auth, ilink, BOT_QR_MAX_REFRESH=1,
                                    ALERT_WEBHOOK_URL=receiver.url, ALERT_GRACE_SECONDS=600,
                                    ALERT_CHECK_SECONDS=0.1, OUTBOX_INTERVAL_SECONDS=0.1)
    client = app.test_client()
    ilink.expire_session()
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.expire_qr()
    state = wait_for_state(client, auth, "needs_login")
    assert state["reason"] == "the login QR expired once with nobody scanning it"
    assert wait_for(lambda: client.get("/api/alerts", headers=auth).get_json()["open"], timeout=5)
    assert client.get("/api/alerts", headers=auth).get_json()["incidents"][0]["kind"] == "needs_login"


def connections_to(port: int) -> int:
    """Open TCP connections from this machine to `port` (the fake iLink server's), from /proc."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if int(row[2].split(":")[1], 16) == port and row[3] == "01")


def test_sessions_that_end_again_and_again_leak_no_thread_and_no_connection(make_app, run_bot, auth, ilink):
    app, runtime, received = online(make_app, run_bot, auth, ilink)
    client = app.test_client()
    port = int(ilink.base_url.rsplit(":", 1)[1])

    def poll_threads():  # the scheduler's pool grows on its own; the iLink sessions' threads must not
        return [t for t in threading.enumerate() if t.name.startswith("geekai-ilink")]

    baseline = len(poll_threads()), connections_to(port)
    for _ in range(10):
        ilink.expire_session()
        ilink_log_in(client, auth, ilink)
    assert wait_for(lambda: len(poll_threads()) <= baseline[0], timeout=10), poll_threads()
    assert wait_for(lambda: connections_to(port) <= baseline[1] + 2, timeout=10), (connections_to(port), baseline)
