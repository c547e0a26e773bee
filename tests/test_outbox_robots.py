"""WeCom, DingTalk and Feishu robots answer HTTP 200 when they refuse a message: read the body."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from geekai import outbox
from geekai.db import db
from geekai.outbox import OutboxMessage


@pytest.fixture
def robot():
    """A chat robot webhook whose JSON answer the test sets."""
    state = {"answer": {}}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps(state["answer"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/robot"
    yield state
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("topic, refusal, success", [
    ("alert.wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, {"errcode": 0, "errmsg": "ok"}),
    ("alert.dingtalk", {"errcode": 310000, "errmsg": "keywords not in content"}, {"errcode": 0, "errmsg": "ok"}),
    ("alert.feishu", {"code": 19021, "msg": "sign match fail"}, {"StatusCode": 0, "StatusMessage": "success"}),
])
def test_refusal_in_a_200_answer_is_a_failed_delivery(make_app, robot, topic, refusal, success):
    app = make_app(OUTBOX_RETRY_FIRST_SECONDS=0.01, OUTBOX_RETRY_MAX_SECONDS=0.01)
    with app.app_context():
        message_id = outbox.enqueue(topic, "http", robot["url"], {"msgtype": "text"}, key=f"{topic}-1").id
        db.session.commit()
    robot["answer"] = refusal
    assert outbox.deliver_due(app) == 0
    with app.app_context():
        message = db.session.get(OutboxMessage, message_id)
        assert message.status == "pending" and message.attempts == 1
        assert "refused" in message.last_error and str(list(refusal.values())[0]) in message.last_error
        outbox.retry(message_id)
    robot["answer"] = success
    assert outbox.deliver_due(app) == 1
    with app.app_context():
        assert db.session.get(OutboxMessage, message_id).status == "delivered"


@pytest.mark.parametrize("topic, answer", [
    ("alert.wecom", {}), ("alert.wecom", {"errmsg": "ok"}), ("alert.wecom", {"code": 0}),
    ("alert.dingtalk", {}), ("alert.dingtalk", {"StatusCode": 0}),
    ("alert.feishu", {}), ("alert.feishu", {"msg": "success"}), ("alert.feishu", {"errcode": 0}),
])
def test_an_answer_without_the_verdict_field_is_a_refusal(make_app, robot, topic, answer):
    app = make_app(OUTBOX_RETRY_FIRST_SECONDS=0.01, OUTBOX_RETRY_MAX_SECONDS=0.01)
    with app.app_context():
        message_id = outbox.enqueue(topic, "http", robot["url"], {"msgtype": "text"}, key=f"{topic}-2").id
        db.session.commit()
    robot["answer"] = answer
    assert outbox.deliver_due(app) == 0
    with app.app_context():
        message = db.session.get(OutboxMessage, message_id)
        assert message.status == "pending" and "refused" in message.last_error


@pytest.mark.parametrize("answer", [{"code": 0, "data": {}, "msg": "success"},
                                    {"StatusCode": 0, "StatusMessage": "success"}])
def test_feishu_accepts_either_answer_shape(make_app, robot, answer):
    app = make_app()
    with app.app_context():
        outbox.enqueue("alert.feishu", "http", robot["url"], {"msg_type": "text"}, key="feishu-ok")
        db.session.commit()
    robot["answer"] = answer
    assert outbox.deliver_due(app) == 1
