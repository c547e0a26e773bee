"""The send queue and the callbacks across restarts of the real `python app.py` (tests/service.py)."""
from __future__ import annotations

import json
import time
import urllib.request

from conftest import CALLBACK_SECRET, wait_for
from message_helpers import sent_texts
from receivers import WebhookReceiver


def call(svc, method, path, body=None):
    request = urllib.request.Request(svc.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else b"" if method == "POST" else None)
    request.add_header("Authorization", f"Bearer {svc.token()}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def state(svc) -> str:
    return call(svc, "GET", "/api/bot")[1]["state"]


def statuses(svc) -> list[tuple[str, str]]:
    return [(m["text"], m["status"]) for m in call(svc, "GET", "/api/messages?direction=out")[1]["messages"]]


def test_a_restart_with_messages_queued_sends_each_once(database, service, emulator, receiver):
    env = {"GEEKAI_WECHAT_BASE_URL": emulator.base_url, "GEEKAI_MESSAGE_CALLBACK_URL": receiver.url,
           "GEEKAI_MESSAGE_CALLBACK_SECRET": CALLBACK_SECRET, "GEEKAI_MESSAGE_SEND_INTERVAL_SECONDS": "0.2",
           "GEEKAI_OUTBOX_INTERVAL_SECONDS": "0.2", "GEEKAI_OUTBOX_RETRY_FIRST_SECONDS": "0.2",
           "GEEKAI_OUTBOX_RETRY_MAX_SECONDS": "0.5"}
    receiver.stop()  # the application's receiver is down the whole first run
    first = service(**env)
    assert wait_for(lambda: emulator.qr_uuid is not None, timeout=15)
    emulator.scan()
    emulator.confirm()
    assert wait_for(lambda: state(first) == "logged_in", timeout=15)
    assert call(first, "POST", "/api/messages", {"to": "张三", "text": "A", "key": "a"})[0] == 202
    assert wait_for(lambda: statuses(first) == [("A", "sent")], timeout=10), statuses(first)
    emulator.send_text("hello from 张三")
    assert wait_for(lambda: call(first, "GET", "/api/messages?direction=in")[1]["messages"], timeout=10)
    call(first, "POST", "/api/bot/stop")  # offline, the session cache kept
    for text in ("B", "C"):
        assert call(first, "POST", "/api/messages", {"to": "张三", "text": text, "key": text})[0] == 202
    assert statuses(first) == [("A", "sent"), ("B", "queued"), ("C", "queued")]
    assert first.terminate()[0] == 0

    second = service(**env)  # logs in from the cache, without a scan
    assert wait_for(lambda: statuses(second) == [("A", "sent"), ("B", "sent"), ("C", "sent")], timeout=20), \
        statuses(second)
    assert call(second, "POST", "/api/messages", {"to": "张三", "text": "B", "key": "B"})[0] == 200  # a repeat
    receiver.start()
    expected = {"message.received": 1, "message.sent": 3}
    assert wait_for(lambda: {kind: len([r for r in receiver.accepted() if WebhookReceiver.json(r)["type"] == kind])
                             for kind in expected} == expected, timeout=20), receiver.requests
    assert second.terminate()[0] == 0

    third = service(**env)
    assert wait_for(lambda: state(third) == "logged_in", timeout=15)
    time.sleep(1.0)  # rounds of the queue and the outbox: nothing is sent again
    assert sent_texts(emulator) == ["A", "B", "C"]
    assert all(len(copies) == 1 for copies in receiver.events_by_key().values())
    assert len(receiver.accepted()) == 4 and all(receiver.verify(r) for r in receiver.accepted())
