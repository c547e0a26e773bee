"""Messages end to end through the real wxpy and the fake web-WeChat server: the send queue, contact
ids across logins, every failure the protocol answers, the feed and the callbacks."""
from __future__ import annotations

import time

import pytest

from geekai.db import db, utcnow
from geekai.messages.models import Message

from conftest import CALLBACK_SECRET, log_in_by_scan, wait_for, wait_for_state
from message_helpers import feed, message, post, sent_texts, wait_for_status
from receivers import WebhookReceiver

QUICK = {"MESSAGE_SEND_INTERVAL_SECONDS": 0.1, "MESSAGE_RETRY_FIRST_SECONDS": 0.1,
         "MESSAGE_RETRY_MAX_SECONDS": 0.3, "OUTBOX_INTERVAL_SECONDS": 0.1,
         "OUTBOX_RETRY_FIRST_SECONDS": 0.1, "OUTBOX_RETRY_MAX_SECONDS": 0.3}


@pytest.fixture
def msg_app(make_app, emulator, receiver):
    return make_app(WECHAT_BASE_URL=emulator.base_url, MESSAGE_CALLBACK_URL=receiver.url,
                    MESSAGE_CALLBACK_SECRET=CALLBACK_SECRET, **QUICK)


@pytest.fixture
def online(msg_app, run_bot, emulator, auth):
    """The app's bot logged in to the emulator; returns its test client."""
    client = msg_app.test_client()
    run_bot(msg_app)
    log_in_by_scan(client, auth, emulator)
    return client


def events(receiver, kind: str) -> list[dict]:
    return [WebhookReceiver.json(r) for r in receiver.accepted() if WebhookReceiver.json(r)["type"] == kind]


# ----- sending -------------------------------------------------------------------------------

def test_a_message_queued_while_offline_is_sent_once_after_the_login(msg_app, run_bot, emulator, auth):
    client = msg_app.test_client()
    run_bot(msg_app)
    wait_for_state(client, auth, "waiting_for_scan")
    queued = post(client, auth, to="张三", text="您的订单已发货", key="ship-1").get_json()
    time.sleep(0.5)
    waiting = message(client, auth, queued["id"])
    assert (waiting["status"], waiting["attempts"], waiting["error"]) == ("queued", 0, "") and emulator.sent == []
    log_in_by_scan(client, auth, emulator)
    done = wait_for_status(client, auth, queued["id"], "sent")
    assert done["sent_at"] and done["attempts"] == 1 and done["error"] == ""
    time.sleep(0.5)  # a few more rounds of the queue: nothing goes twice
    assert sent_texts(emulator) == ["您的订单已发货"]
    assert emulator.sent[0]["Msg"]["ToUserName"] == emulator.friend_username("张三")


def test_online_messages_go_at_once_and_in_order_per_contact(online, emulator, auth):
    ids = []
    for n in range(4):
        ids.append(post(online, auth, to="张三", text=f"张三 {n}").get_json()["id"])
        ids.append(post(online, auth, to="李四", text=f"李四 {n}").get_json()["id"])
    for message_id in ids:
        wait_for_status(online, auth, message_id, "sent")
    assert sent_texts(emulator, emulator.friend_username("张三")) == [f"张三 {n}" for n in range(4)]
    assert sent_texts(emulator, emulator.friend_username("李四")) == [f"李四 {n}" for n in range(4)]


def test_the_queue_and_handler_replies_send_at_the_same_time(online, msg_app, emulator, auth):
    from geekai.bot import runtime as bot_runtime

    bot_runtime.get(msg_app).supervisor.handlers.append(lambda m: m.reply(f"echo {m.text}"))
    ids = []
    for n in range(10):
        emulator.send_text(f"in {n}", from_user="李四")
        ids.append(post(online, auth, to="张三", text=f"out {n}").get_json()["id"])
    for message_id in ids:
        wait_for_status(online, auth, message_id, "sent")
    assert wait_for(lambda: len(sent_texts(emulator, emulator.friend_username("李四"))) == 10, timeout=10)
    assert sent_texts(emulator, emulator.friend_username("张三")) == [f"out {n}" for n in range(10)]
    assert sent_texts(emulator, emulator.friend_username("李四")) == [f"echo in {n}" for n in range(10)]


def test_a_rate_limit_is_retried_with_backoff_and_holds_back_only_that_contact(online, emulator, auth):
    emulator.refuse_sends(1205, times=2)  # "sending too often", twice
    first = post(online, auth, to="张三", text="first").get_json()["id"]
    second = post(online, auth, to="张三", text="second").get_json()["id"]
    done = wait_for_status(online, auth, first, "sent")
    assert done["attempts"] == 3
    wait_for_status(online, auth, second, "sent")
    assert sent_texts(emulator) == ["first", "second"]  # the second never overtook the first
    assert [r["Msg"]["Content"] for r in emulator.refused] == ["first", "first"]


@pytest.mark.parametrize("fault", ["5xx", "drop", "garbage"])
def test_a_broken_answer_to_the_send_is_retried(online, emulator, auth, fault):
    emulator.set_fault(fault, paths=["webwxsendmsg"])
    queued = post(online, auth, text=f"through {fault}").get_json()["id"]
    waiting = wait_for(lambda: message(online, auth, queued)["attempts"] >= 1, timeout=10)
    assert waiting, message(online, auth, queued)
    current = message(online, auth, queued)
    assert current["status"] == "queued" and current["error"] and current["next_attempt_at"]
    emulator.set_fault(None)
    wait_for_status(online, auth, queued, "sent")
    assert sent_texts(emulator) == [f"through {fault}"]
    assert wait_for_state(online, auth, "logged_in")  # a failed send is no bot failure


def test_after_the_last_attempt_the_message_fails_with_the_reason(make_app, run_bot, emulator, auth, receiver):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, MESSAGE_MAX_ATTEMPTS=2, MESSAGE_CALLBACK_URL=receiver.url,
                   MESSAGE_CALLBACK_SECRET=CALLBACK_SECRET, **QUICK)
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    emulator.refuse_sends(1205, times=5)
    queued = post(client, auth, text="too often").get_json()["id"]
    failed = wait_for_status(client, auth, queued, "failed")
    assert failed["attempts"] == 2 and failed["error"].startswith("gave up after 2 attempts: ")
    assert "Ret 1205" in failed["error"]
    assert wait_for(lambda: events(receiver, "message.failed"), timeout=10)
    assert events(receiver, "message.failed")[0]["data"]["message"]["error"] == failed["error"]


@pytest.mark.parametrize("to, words", [
    ("赵六", "unknown contact '赵六': no friend, group or official account of GeekAI测试号"),
    ("微信支付", "ambiguous contact '微信支付': 2 contacts"),  # a friend renamed like the official account
])
def test_an_unknown_or_ambiguous_contact_fails_at_once_without_a_request(online, emulator, auth, to, words):
    queued = post(online, auth, to=to, text="hello").get_json()["id"]
    failed = wait_for_status(online, auth, queued, "failed")
    assert words in failed["error"] and failed["attempts"] == 1
    assert emulator.request_counts["/cgi-bin/mmwebwx-bin/webwxsendmsg"] == 0


def test_a_recipient_wechat_refuses_fails_for_good(online, emulator, auth):
    emulator.refuse_sends(1204)
    queued = post(online, auth, text="hi").get_json()["id"]
    failed = wait_for_status(online, auth, queued, "failed")
    assert "Ret 1204: not a friend" in failed["error"] and failed["attempts"] == 1
    after = post(online, auth, text="next").get_json()["id"]
    wait_for_status(online, auth, after, "sent")  # the next message to the same person still goes


def test_a_send_interrupted_by_a_crash_is_failed_not_repeated(msg_app, run_bot, emulator, auth, receiver):
    client = msg_app.test_client()
    queued = post(client, auth, text="maybe delivered").get_json()["id"]
    with msg_app.app_context():  # as a process that died in the middle of sending leaves it
        db.session.execute(db.update(Message).where(Message.id == queued)
                           .values(claim_token="dead-process", claimed_until=utcnow()))
        db.session.commit()
    run_bot(msg_app)
    log_in_by_scan(client, auth, emulator)
    failed = wait_for_status(client, auth, queued, "failed")
    assert failed["error"].startswith("interrupted: the service stopped while sending")
    assert emulator.sent == []
    assert wait_for(lambda: events(receiver, "message.failed"), timeout=10)


def test_a_logout_keeps_the_queue_for_the_next_login(online, emulator, auth):
    emulator.logout()
    wait_for_state(online, auth, "waiting_for_scan", timeout=15)
    queued = post(online, auth, text="after the logout").get_json()["id"]
    time.sleep(0.5)
    assert message(online, auth, queued)["status"] == "queued" and message(online, auth, queued)["attempts"] == 0
    log_in_by_scan(online, auth, emulator)
    wait_for_status(online, auth, queued, "sent")
    assert sent_texts(emulator) == ["after the logout"]


# ----- contact ids ---------------------------------------------------------------------------

def test_the_contact_id_survives_a_new_login_with_new_user_names(msg_app, run_bot, emulator, auth):
    emulator.new_user_names_per_login = True
    client = msg_app.test_client()
    run_bot(msg_app)
    log_in_by_scan(client, auth, emulator)
    before = emulator.friend_username("张三")
    emulator.send_text("在吗")
    assert wait_for(lambda: feed(client, auth, direction="in"), timeout=10)
    contact = feed(client, auth, direction="in")[0]["contact"]
    assert contact == "张三"
    emulator.logout()
    wait_for_state(client, auth, "waiting_for_scan", timeout=15)
    log_in_by_scan(client, auth, emulator)
    after = emulator.friend_username("张三")
    assert after != before  # WeChat renamed every contact for the new session
    queued = post(client, auth, to=contact, text="在").get_json()["id"]
    wait_for_status(client, auth, queued, "sent")
    assert emulator.sent[-1]["Msg"]["ToUserName"] == after


def test_a_remark_name_is_the_contact_id_and_tells_namesakes_apart(make_app, run_bot, emulator, auth):
    emulator.add_contact("张三", remark_name="张三（上海）")  # a second 张三, told apart by the owner's remark
    app = make_app(WECHAT_BASE_URL=emulator.base_url, **QUICK)
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    emulator.send_text("from shanghai", from_user=emulator.contact_username("张三（上海）"))
    assert wait_for(lambda: feed(client, auth, direction="in"), timeout=10)
    received = feed(client, auth, direction="in")[0]
    assert (received["contact"], received["contact_name"]) == ("张三（上海）", "张三（上海）")
    reply = post(client, auth, to="张三（上海）", text="to shanghai").get_json()["id"]
    plain = post(client, auth, to="张三", text="to the other").get_json()["id"]
    wait_for_status(client, auth, reply, "sent")
    wait_for_status(client, auth, plain, "sent")  # the remark makes the plain nickname unique again
    assert sent_texts(emulator, emulator.contact_username("张三（上海）")) == ["to shanghai"]
    assert sent_texts(emulator, emulator.friend_username("张三")) == ["to the other"]


def test_a_group_is_a_contact_too(online, emulator, auth):
    queued = post(online, auth, to="GeekAI 用户群", text="大家好").get_json()["id"]
    wait_for_status(online, auth, queued, "sent")
    assert sent_texts(emulator, emulator.group_username("GeekAI 用户群")) == ["大家好"]


# ----- receiving -----------------------------------------------------------------------------

def test_every_message_is_stored_before_the_handlers_run(online, msg_app, emulator, auth):
    from geekai.bot import runtime as bot_runtime

    seen_by_handler = []

    def handler(incoming):
        with msg_app.app_context():
            seen_by_handler.append(db.session.execute(
                db.select(Message.text).where(Message.msg_id == incoming.id)).scalar())

    bot_runtime.get(msg_app).supervisor.handlers.append(handler)
    emulator.send_text("1 < 2 & 3")
    emulator.inject_message({"MsgType": 49, "AppMsgType": 5, "FromUserName": emulator.mp_username("微信支付"),
                             "Content": "&lt;msg&gt;&lt;appmsg&gt;&lt;title&gt;收款&lt;/title&gt;&lt;/appmsg&gt;&lt;/msg&gt;"})
    assert wait_for(lambda: len(seen_by_handler) == 2, timeout=10)
    assert seen_by_handler[0] == "1 < 2 & 3" and seen_by_handler[1] is not None
    stored = feed(online, auth, direction="in")
    assert [(m["contact"], m["type"]) for m in stored] == [("张三", "Text"), ("微信支付", "Sharing")]


def test_a_message_fetched_twice_is_stored_once(online, emulator, auth):
    entry = {"MsgType": 1, "FromUserName": emulator.friend_username("李四"), "Content": "once", "MsgId": "777001"}
    emulator.inject_message(entry)
    assert wait_for(lambda: feed(online, auth, direction="in"), timeout=10)
    emulator.inject_message(entry)  # WeChat hands the same message again (a resync)
    emulator.send_text("after")
    assert wait_for(lambda: len(feed(online, auth, direction="in")) == 2, timeout=10)
    assert [m["text"] for m in feed(online, auth, direction="in")] == ["once", "after"]


def test_a_receiver_that_is_down_gets_every_message_later_once(online, emulator, auth, receiver):
    receiver.stop()
    for n in range(3):
        emulator.send_text(f"message {n}")
    assert wait_for(lambda: len(feed(online, auth, direction="in")) == 3, timeout=10)
    reply = post(online, auth, text="answer").get_json()["id"]
    wait_for_status(online, auth, reply, "sent")
    time.sleep(0.5)  # the outbox tries, fails and backs off meanwhile
    receiver.start()
    assert wait_for(lambda: len(events(receiver, "message.received")) == 3 and events(receiver, "message.sent"),
                    timeout=15), receiver.requests
    time.sleep(0.5)
    received = events(receiver, "message.received")
    assert [e["data"]["message"]["text"] for e in received] == ["message 0", "message 1", "message 2"]
    assert all(len(copies) == 1 for copies in receiver.events_by_key().values())
    assert all(receiver.verify(r) for r in receiver.accepted())
    first = received[0]
    assert first["id"] == f"message.received:{first['data']['message']['id']}"
    assert first["data"]["message"]["contact"] == "张三" and first["data"]["message"]["direction"] == "in"
    assert events(receiver, "message.sent")[0]["data"]["message"]["status"] == "sent"


def test_a_send_that_hangs_through_a_stop_fails_as_interrupted_not_repeated(online, emulator, auth):
    emulator.set_fault("hang", paths=["webwxsendmsg"])
    queued = post(online, auth, text="into the void").get_json()["id"]
    assert wait_for(lambda: emulator.request_counts["/cgi-bin/mmwebwx-bin/webwxsendmsg"] == 1, timeout=10)
    assert online.post("/api/bot/stop", headers=auth).status_code == 202  # while WeChat holds the send
    failed = wait_for_status(online, auth, queued, "failed", timeout=20)
    assert failed["error"].startswith("interrupted: the bot went offline while WeChat had the message")
    emulator.set_fault(None)  # the held request goes through after all: WeChat did get the text
    assert online.post("/api/bot/start", headers=auth).status_code == 202
    wait_for_state(online, auth, "logged_in")  # from the cache
    time.sleep(0.5)
    assert sent_texts(emulator) == ["into the void"]  # once: a retry would have sent it twice
    assert message(online, auth, queued)["status"] == "failed"


@pytest.mark.sqlite_only
def test_the_outcome_of_a_send_waits_out_a_locked_database(online, msg_app, emulator, auth):
    import sqlite3

    emulator.set_fault("hang", paths=["webwxsendmsg"])
    queued = post(online, auth, text="locked out").get_json()["id"]
    assert wait_for(lambda: emulator.request_counts["/cgi-bin/mmwebwx-bin/webwxsendmsg"] == 1, timeout=10)
    other_writer = sqlite3.connect(f"{msg_app.instance_path}/geekai.sqlite", isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")  # holds the write lock past SQLite's 5 s busy timeout
    try:
        emulator.set_fault(None)  # WeChat takes the message now; its outcome cannot be written yet
        assert wait_for(lambda: sent_texts(emulator) == ["locked out"], timeout=10)
        time.sleep(6)
    finally:
        other_writer.execute("ROLLBACK")
        other_writer.close()
    done = wait_for_status(online, auth, queued, "sent", timeout=15)
    assert done["attempts"] == 1 and sent_texts(emulator) == ["locked out"]
