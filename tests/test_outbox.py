"""The persistent outbox: enqueue in the caller's transaction, deliver, retry, fail, claim once."""
from __future__ import annotations

import email
import threading
import time
from datetime import timedelta

import pytest

from geekai import jobs, outbox
from geekai.db import db, utcnow
from geekai.outbox import OutboxMessage
from receivers import FakeSMTPServer, WebhookReceiver
from conftest import CALLBACK_SECRET, sign_in

SECRET = CALLBACK_SECRET
QUICK = {"OUTBOX_RETRY_FIRST_SECONDS": 0.01, "OUTBOX_RETRY_MAX_SECONDS": 0.05, "OUTBOX_TIMEOUT_SECONDS": 1,
         "OUTBOX_MAX_ATTEMPTS": 3, "PAYMENT_CALLBACK_SECRET": SECRET}


@pytest.fixture
def quick_app(make_app):
    return make_app(**QUICK)


def put(app, key="k1", target="http://127.0.0.1:9/x", payload=None, **kwargs):
    with app.app_context():
        message = outbox.enqueue("test.event", "http", target, payload or {"n": 1}, key=key, **kwargs)
        db.session.commit()
        return message.id if message else None


def row(app, message_id) -> OutboxMessage:
    with app.app_context():
        message = db.session.get(OutboxMessage, message_id)
        db.session.expunge(message)
        return message


def make_due(app):
    """Skip the backoff wait, as time passing would."""
    with app.app_context():
        db.session.execute(db.update(OutboxMessage).where(OutboxMessage.status == "pending")
                           .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()


def test_duplicate_key_is_a_no_op(quick_app):
    assert put(quick_app, key="same") is not None
    assert put(quick_app, key="same") is None
    with quick_app.app_context():
        assert db.session.execute(db.select(db.func.count(OutboxMessage.id))).scalar() == 1


def test_enqueue_belongs_to_the_callers_transaction(quick_app):
    with quick_app.app_context():
        outbox.enqueue("test.event", "http", "http://127.0.0.1:9/x", {"n": 1}, key="rolled-back")
        db.session.rollback()
        assert db.session.execute(db.select(OutboxMessage)).first() is None


def test_unknown_transport_refused(quick_app):
    with quick_app.app_context(), pytest.raises(ValueError):
        outbox.enqueue("t", "pigeon", "x", "body", key="k")


def test_delivers_with_idempotency_key_and_signature(quick_app, receiver):
    message_id = put(quick_app, target=receiver.url, payload={"amount": "12.00"}, key="pay-1",
                     sign_with="PAYMENT_CALLBACK_SECRET")
    assert outbox.deliver_due(quick_app) == 1
    [request] = receiver.accepted()
    assert request["headers"]["idempotency-key"] == "pay-1"
    assert request["headers"]["x-geekai-event"] == "test.event"
    assert WebhookReceiver.json(request) == {"amount": "12.00"}
    assert receiver.verify(request)
    tampered = dict(request, body=request["body"].replace(b"12.00", b"99.00"))
    assert not receiver.verify(tampered)
    message = row(quick_app, message_id)
    assert (message.status, message.attempts, message.last_error) == ("delivered", 1, "")
    assert message.delivered_at is not None
    assert outbox.deliver_due(quick_app) == 0  # nothing is sent twice


def test_failure_backs_off_then_fails_then_manual_retry_delivers(make_app, receiver):
    # make_due() below stands for the waits: a first pause long enough that no run is due early.
    quick_app = make_app(**QUICK | {"OUTBOX_RETRY_FIRST_SECONDS": 30, "OUTBOX_RETRY_MAX_SECONDS": 60})
    receiver.mode = "error"
    message_id = put(quick_app, target=receiver.url)
    assert outbox.deliver_due(quick_app) == 0
    message = row(quick_app, message_id)
    assert (message.status, message.attempts) == ("pending", 1)
    assert "HTTP 500" in message.last_error
    assert message.next_attempt_at > utcnow()
    assert outbox.deliver_due(quick_app) == 0  # not due yet: no request
    assert len(receiver.requests) == 1
    for _ in range(2):
        make_due(quick_app)
        outbox.deliver_due(quick_app)
    message = row(quick_app, message_id)
    assert (message.status, message.attempts) == ("failed", 3)
    make_due(quick_app)
    assert outbox.deliver_due(quick_app) == 0  # failed messages wait for a person
    receiver.mode = "ok"
    with quick_app.app_context():
        assert outbox.retry(message_id) is True
    assert outbox.deliver_due(quick_app) == 1
    assert row(quick_app, message_id).status == "delivered"
    with quick_app.app_context():
        assert outbox.retry(message_id) is False  # delivered: nothing to retry
        assert outbox.retry(99999) is False


def test_backoff_doubles_with_jitter_and_is_capped(make_app):
    app = make_app(OUTBOX_RETRY_FIRST_SECONDS=2, OUTBOX_RETRY_MAX_SECONDS=600)
    assert 1.6 <= outbox.backoff(app, 1) <= 2.4
    assert 6.4 <= outbox.backoff(app, 3) <= 9.6
    assert max(outbox.backoff(app, n) for n in range(1, 60)) <= 600


def test_hanging_receiver_is_bounded_by_the_timeout(quick_app, receiver):
    receiver.mode, receiver.hang_seconds = "hang", 3
    message_id = put(quick_app, target=receiver.url)
    started = time.monotonic()
    outbox.deliver_due(quick_app)
    assert time.monotonic() - started < 2.5
    assert "Timeout" in row(quick_app, message_id).last_error


@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body"])
def test_trickling_receiver_is_bounded_by_the_timeout(quick_app, receiver, mode):
    receiver.mode, receiver.hang_seconds = mode, 4
    message_id = put(quick_app, target=receiver.url)
    started = time.monotonic()
    assert outbox.deliver_due(quick_app) == 0
    assert time.monotonic() - started < 2.5  # OUTBOX_TIMEOUT_SECONDS is 1, the lease 33
    message = row(quick_app, message_id)
    assert message.status == "pending" and "Timeout" in message.last_error
    assert len(receiver.requests) == 1


def test_a_huge_answer_is_read_only_so_far(quick_app, receiver, monkeypatch):
    monkeypatch.setattr(outbox.http_sender, "MAX_ANSWER_BYTES", 16)
    message_id = put(quick_app, target=receiver.url)
    receiver.mode = "error"
    outbox.deliver_due(quick_app)
    assert row(quick_app, message_id).last_error == 'HTTP 500: {"errcode":-1,"e'


def test_down_receiver_costs_one_attempt_per_round(quick_app, receiver):
    receiver.stop()
    ids = [put(quick_app, target=receiver.url, key=f"k{n}") for n in range(5)]
    assert outbox.deliver_due(quick_app) == 0
    attempts = [row(quick_app, i).attempts for i in ids]
    assert attempts == [1, 0, 0, 0, 0]


def test_messages_to_a_dead_receiver_do_not_starve_a_healthy_one(make_app, receiver):
    app = make_app(**{**QUICK, "OUTBOX_RETRY_FIRST_SECONDS": 60, "OUTBOX_RETRY_MAX_SECONDS": 600})
    dead = WebhookReceiver()  # never started: connections are refused
    dead_ids = [put(app, target=dead.url, key=f"dead-{n}") for n in range(60)]
    healthy_id = put(app, target=receiver.url, key="healthy")
    assert outbox.deliver_due(app) == 0  # the window holds 50 messages to the dead receiver
    assert outbox.deliver_due(app) == 1  # they were postponed with the one that failed
    assert row(app, healthy_id).status == "delivered" and len(receiver.accepted()) == 1
    dead_rows = [row(app, i) for i in dead_ids]
    assert sum(m.attempts for m in dead_rows) == 1  # one timeout spent on the dead receiver
    assert all(m.status == "pending" and m.next_attempt_at > utcnow() for m in dead_rows)


def test_receiver_down_then_up_gets_everything_once(quick_app, receiver):
    receiver.stop()
    keys = [f"event-{n}" for n in range(20)]
    for key in keys:
        put(quick_app, target=receiver.url, key=key, sign_with="PAYMENT_CALLBACK_SECRET")
    outbox.deliver_due(quick_app)
    make_due(quick_app)
    outbox.deliver_due(quick_app)
    receiver.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(receiver.events_by_key()) < len(keys):
        make_due(quick_app)
        outbox.deliver_due(quick_app)
    grouped = receiver.events_by_key()
    assert sorted(grouped) == sorted(keys)
    assert all(len(requests) == 1 for requests in grouped.values())
    assert all(receiver.verify(r) for r in receiver.accepted())


def test_two_workers_never_send_the_same_message_twice(make_app, receiver):
    first = make_app(**QUICK)
    second = make_app(**QUICK)  # same sqlite file, its own engine and connections
    for n in range(60):
        put(first, target=receiver.url, key=f"m{n}")
    threads = [threading.Thread(target=outbox.deliver_due, args=(app, 100)) for app in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grouped = receiver.events_by_key()
    assert len(grouped) == 60
    assert all(len(requests) == 1 for requests in grouped.values())


def test_missing_secret_keeps_the_message_pending(make_app, receiver):
    app = make_app(**{**QUICK, "PAYMENT_CALLBACK_SECRET": None})
    message_id = put(app, target=receiver.url, sign_with="PAYMENT_CALLBACK_SECRET")
    outbox.deliver_due(app)
    message = row(app, message_id)
    assert message.status == "pending" and "PAYMENT_CALLBACK_SECRET" in message.last_error
    assert receiver.requests == []


def test_smtp_delivery_with_login(quick_app):
    server = FakeSMTPServer().start()
    try:
        target = f"smtp://ops%40example.com:pw@127.0.0.1:{server.port}?to=a@example.com,b@example.com"
        with quick_app.app_context():
            outbox.enqueue("alert.email", "smtp", target, "the bot is offline", key="alert-1",
                           headers={"Subject": "geekai: bot offline"})
            db.session.commit()
        assert outbox.deliver_due(quick_app) == 1
        [mail] = server.messages
        assert mail["to"] == ["a@example.com", "b@example.com"]
        assert server.logins == ["ops@example.com"] and server.clear_logins == [] and mail["tls"]
        parsed = email.message_from_bytes(mail["data"])
        assert parsed["Subject"] == "geekai: bot offline"
        assert parsed["Idempotency-Key"] == "alert-1"
        assert "the bot is offline" in parsed.get_payload()
    finally:
        server.stop()


def test_smtp_login_without_starttls_is_refused(quick_app):
    server = FakeSMTPServer(starttls=False).start()
    try:
        with quick_app.app_context():
            message_id = outbox.enqueue("alert.email", "smtp", f"smtp://ops:pw@127.0.0.1:{server.port}?to=a@example.com",
                                        "the bot is offline", key="alert-clear").id
            db.session.commit()
        assert outbox.deliver_due(quick_app) == 0
        message = row(quick_app, message_id)
        assert message.status == "pending" and "does not offer STARTTLS" in message.last_error
        assert server.logins == [] and server.messages == []
    finally:
        server.stop()


def test_smtp_without_login_needs_no_starttls(quick_app):
    server = FakeSMTPServer(starttls=False).start()
    try:
        with quick_app.app_context():
            outbox.enqueue("alert.email", "smtp", f"smtp://127.0.0.1:{server.port}?to=a@example.com", "body", key="a5")
            db.session.commit()
        assert outbox.deliver_due(quick_app) == 1
        [mail] = server.messages
        assert mail["to"] == ["a@example.com"] and not mail["tls"] and server.logins == []
    finally:
        server.stop()


def test_smtp_mailto_uses_configured_server(make_app):
    server = FakeSMTPServer().start()
    try:
        app = make_app(**QUICK, ALERT_SMTP_URL=f"smtp://127.0.0.1:{server.port}")
        with app.app_context():
            outbox.enqueue("alert.email", "smtp", "mailto:ops@example.com", "body", key="alert-2")
            db.session.commit()
        assert outbox.deliver_due(app) == 1
        assert server.messages[0]["to"] == ["ops@example.com"]
    finally:
        server.stop()


def test_smtp_down_is_retried(quick_app):
    server = FakeSMTPServer().start()
    port = server.port
    server.stop()
    with quick_app.app_context():
        message = outbox.enqueue("alert.email", "smtp", f"smtp://127.0.0.1:{port}?to=a@example.com", "b", key="a3")
        db.session.commit()
        message_id = message.id
    outbox.deliver_due(quick_app)
    message = row(quick_app, message_id)
    assert message.status == "pending" and message.attempts == 1 and message.last_error


def test_to_dict_hides_the_smtp_password(quick_app):
    with quick_app.app_context():
        message = outbox.enqueue("alert.email", "smtp", "smtp://u:secretpw@h:25?to=a@b", "b", key="a4")
        assert "secretpw" not in str(message.to_dict())


@pytest.mark.parametrize("target, secrets, shown", [
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx", ["693a91f6"],
     "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    ("https://oapi.dingtalk.com/robot/send?access_token=c1d2e3tok&timestamp=1&sign=s1gn%2B", ["c1d2e3tok", "s1gn"],
     "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1&sign=***"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c3d-uuid", ["0a1b2c3d"],
     "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
    ("smtp://u:secretpw@h:25?to=a@b,c@d", ["secretpw"], "smtp://u:***@h:25?to=a@b,c@d"),
    ("https://example.com/geekai-hook?order=7", [], "https://example.com/geekai-hook?order=7"),
    ("mailto:ops@example.com", [], "mailto:ops@example.com"),
])
def test_redact_hides_hook_tokens_and_credentials(target, secrets, shown):
    assert outbox.redact(target) == shown
    assert not any(secret in outbox.redact(target) for secret in secrets)


def test_deliveries_page_and_api_hide_robot_tokens(quick_app, auth):
    target = "https://oapi.dingtalk.com/robot/send?access_token=c1d2e3tok"
    put(quick_app, target=target, key="robot")
    client = quick_app.test_client()
    assert "c1d2e3tok" not in client.get("/api/deliveries", headers=auth).get_data(as_text=True)
    sign_in(client)
    page = client.get("/deliveries").get_data(as_text=True)
    assert "access_token=***" in page and "c1d2e3tok" not in page


def test_init_app_registers_the_job_once(make_app):
    app = make_app(OUTBOX_INTERVAL_SECONDS=5)
    outbox.init_app(app)
    outbox.init_app(app)
    found = [job for job in jobs.jobs(app) if job.id == outbox.JOB_ID]
    assert len(found) == 1 and found[0].seconds == 5


def test_retry_while_a_worker_is_sending_is_refused_and_nothing_is_sent_twice(quick_app, receiver, auth, monkeypatch):
    message_id = put(quick_app, target=receiver.url)
    sending, proceed = threading.Event(), threading.Event()
    real_send = outbox.send

    def slow_send(app, message):
        sending.set()
        assert proceed.wait(5)
        real_send(app, message)

    monkeypatch.setattr(outbox.queue, "send", slow_send)
    worker = threading.Thread(target=outbox.deliver_due, args=(quick_app,))
    worker.start()
    try:
        assert sending.wait(5)
        client = quick_app.test_client()
        answer = client.post(f"/api/deliveries/{message_id}/retry", headers=auth)
        assert answer.status_code == 409 and "being sent" in answer.get_json()["error"]
        with quick_app.app_context():
            assert outbox.retry(message_id) is False
            assert db.session.get(OutboxMessage, message_id).retryable is False
    finally:
        proceed.set()
        worker.join()
    assert row(quick_app, message_id).status == "delivered"
    assert outbox.deliver_due(quick_app) == 0
    assert len(receiver.accepted()) == 1


def test_retry_of_a_claim_whose_lease_expired_is_allowed(quick_app):
    message_id = put(quick_app)
    with quick_app.app_context():
        assert outbox.queue._claim(quick_app, message_id) is not None  # then the worker died
        assert outbox.retry(message_id) is False
        db.session.execute(db.update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert db.session.get(OutboxMessage, message_id).retryable is True
        assert outbox.retry(message_id) is True
        assert db.session.get(OutboxMessage, message_id, populate_existing=True).claim_token is None
