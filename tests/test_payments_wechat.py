"""End to end through the real wxpy and the fake web-WeChat server: receipt -> ledger -> order -> callback."""
from __future__ import annotations

import time

import pytest

from conftest import log_in_by_scan, wait_for
from payment_helpers import as_web_wechat, receipt_xml
from receivers import WebhookReceiver
from conftest import CALLBACK_SECRET

SECRET = CALLBACK_SECRET


@pytest.fixture
def pay_bot_app(make_app, emulator, receiver):
    return make_app(WECHAT_BASE_URL=emulator.base_url, PAYMENT_CALLBACK_URL=receiver.url,
                    PAYMENT_CALLBACK_SECRET=SECRET, OUTBOX_INTERVAL_SECONDS=0.1, ORDER_EXPIRY_CHECK_SECONDS=0.2)


def payments(client, auth, **query):
    return client.get("/api/payments", query_string=query, headers=auth).get_json()["payments"]


def test_receipt_through_wxpy_pays_an_order_and_calls_back(pay_bot_app, run_bot, emulator, auth, receiver):
    client = pay_bot_app.test_client()
    run_bot(pay_bot_app)
    log_in_by_scan(client, auth, emulator)
    order = client.post("/api/orders", json={"amount": "12.00", "reference": "user-42"}, headers=auth).get_json()
    tx_id = "4200001234202409100000000777"
    now = int(time.time())
    emulator.inject_message({"MsgType": 49, "AppMsgType": 5, "FromUserName": emulator.mp_username("微信支付"),
                             "Content": as_web_wechat(receipt_xml(tx_id, "12.00", note=f"order {order['code'].lower()}",
                                                                  create_time=now)), "CreateTime": now})
    booked = wait_for(lambda: payments(client, auth), timeout=10)
    assert [(p["tx_id"], p["amount"], p["status"]) for p in booked] == [(tx_id, "12.00", "matched")]
    answer = client.get(f"/api/orders/{order['id']}", headers=auth).get_json()
    assert answer["status"] == "paid" and answer["payment"]["tx_id"] == tx_id
    assert wait_for(lambda: len(receiver.accepted()) == 2, timeout=10), receiver.requests
    events = {WebhookReceiver.json(r)["type"]: r for r in receiver.accepted()}
    assert set(events) == {"payment.received", "order.paid"}
    assert all(receiver.verify(r) for r in events.values())
    assert WebhookReceiver.json(events["order.paid"])["data"]["order"]["reference"] == "user-42"


def test_forgery_through_wxpy_is_rejected(pay_bot_app, run_bot, emulator, auth, receiver):
    client = pay_bot_app.test_client()
    run_bot(pay_bot_app)
    log_in_by_scan(client, auth, emulator)
    forged = as_web_wechat(receipt_xml("4200001234202409100000000888", "500.00"))
    emulator.inject_message({"MsgType": 49, "AppMsgType": 5, "FromUserName": emulator.friend_username("微信支付"),
                             "Content": forged})
    # Stored first as `received`, then judged.
    notices = wait_for(lambda: [n for n in client.get("/api/payments/notices", headers=auth).get_json()["notices"]
                                if n["status"] != "received"], timeout=10)
    assert [n["status"] for n in notices] == ["rejected"]
    assert "VerifyFlag 0" in notices[0]["reason"]
    assert payments(client, auth) == []
    time.sleep(0.3)
    assert receiver.requests == []


def test_a_receipt_still_queued_when_the_phone_logs_out_is_judged_by_its_real_sender(pay_bot_app, run_bot, emulator,
                                                                                  auth):
    """itchat's logout empties its contact lists: a message must be read (its sender looked up) when
    it arrives, not when a slow handler before it lets it through; else WeChat Pay's own notice looks
    like a friend's forgery and the payment is rejected."""
    import threading

    client = pay_bot_app.test_client()
    runtime = run_bot(pay_bot_app)
    log_in_by_scan(client, auth, emulator)
    held, release = threading.Event(), threading.Event()

    def slow(message):  # a handler that waits (as for a locked database) on the first text
        if message.text == "first":
            held.set()
            release.wait(20)
    runtime.supervisor.handlers.insert(0, slow)
    emulator.send_text("first")
    assert held.wait(10)
    now = int(time.time())
    emulator.inject_message({"MsgType": 49, "AppMsgType": 5, "FromUserName": emulator.mp_username("微信支付"),
                             "Content": as_web_wechat(receipt_xml("4200001234202409100000000999", "3.00",
                                                                  create_time=now)), "CreateTime": now})
    assert emulator.wait_for(lambda: emulator.pending_messages == 0, timeout=10)  # fetched, waiting behind
    emulator.logout()
    wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["state"] != "logged_in", timeout=10)
    release.set()
    booked = wait_for(lambda: payments(client, auth), timeout=15)
    assert [(p["tx_id"], p["status"]) for p in booked] == [("4200001234202409100000000999", "unclaimed")]
