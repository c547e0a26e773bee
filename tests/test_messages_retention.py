"""MESSAGE_RETENTION_DAYS: old messages and their callbacks go; queued ones and payments stay."""
from __future__ import annotations

from datetime import timedelta

from geekai import jobs
from geekai.bot.backend import IncomingMessage
from geekai.db import db, utcnow
from geekai.messages import retention
from geekai.messages.feed import queue_outgoing, record_incoming
from geekai.messages.models import Message

from conftest import wait_for
from message_helpers import post, rows
from payment_helpers import OFFICIAL, message as payment_message, receipt_xml

SECRET = "callback-secret-123"


def incoming(n: int) -> IncomingMessage:
    return IncomingMessage(id=f"9{n}", type="Text", text=f"in {n}", sender="@x", sender_name="张三", contact_id="张三")


def age(app, days: float) -> None:
    """Make every row of the message and outbox tables `days` old."""
    with app.app_context():
        moment = utcnow() - timedelta(days=days)
        db.session.execute(db.update(Message).values(created_at=moment))
        from geekai.outbox import OutboxMessage
        db.session.execute(db.update(OutboxMessage).values(created_at=moment))
        db.session.commit()


def counts(app) -> dict[str, int]:
    result = {t: rows(app, t) for t in ("message", "payment", "payment_notice", "payment_order", "outbox")}
    result["message_events"] = rows(app, "outbox", "WHERE topic LIKE 'message.%'")
    return result


def book_a_payment(app, client, auth) -> None:
    from geekai.payments.recorder import record

    order = client.post("/api/orders", json={"amount": "12.00"}, headers=auth).get_json()
    with app.app_context():
        assert record(payment_message(receipt_xml("4200000000000000000000000042", "12.00", note=order["code"]),
                                      OFFICIAL)) == "accepted"


def test_old_messages_and_their_callbacks_go_and_nothing_of_payments(make_app, auth):
    app = make_app(MESSAGE_CALLBACK_URL="http://127.0.0.1:9/hook", MESSAGE_CALLBACK_SECRET=SECRET,
                   PAYMENT_CALLBACK_URL="http://127.0.0.1:9/pay", PAYMENT_CALLBACK_SECRET=SECRET)
    client = app.test_client()
    for n in range(3):
        record_incoming(app, incoming(n))
    sent = post(client, auth, text="delivered long ago").get_json()["id"]
    waiting = post(client, auth, text="still waiting").get_json()["id"]
    book_a_payment(app, client, auth)
    with app.app_context():
        db.session.execute(db.update(Message).where(Message.id == sent).values(status="sent"))
        from geekai.outbox import OutboxMessage
        db.session.execute(db.update(OutboxMessage).values(status="delivered"))
        db.session.commit()
    age(app, 31)
    record_incoming(app, incoming(7))  # today's
    before = counts(app)
    assert before["payment"] == 1 and before["payment_notice"] == 1 and before["message_events"] == 4

    assert retention.purge(app) == 4  # three old inbound, one old sent
    after = counts(app)
    with app.app_context():
        left = {m.text for m in db.session.execute(db.select(Message)).scalars()}
    assert left == {"still waiting", "in 7"}  # a queued message is never deleted unsent
    assert waiting in {m["id"] for m in client.get("/api/messages", headers=auth).get_json()["messages"]}
    assert {k: after[k] for k in ("payment", "payment_notice", "payment_order")} == \
        {k: before[k] for k in ("payment", "payment_notice", "payment_order")}
    assert after["message_events"] == 1  # the old delivered callbacks went, today's (pending) stays
    assert after["outbox"] - after["message_events"] == before["outbox"] - before["message_events"]  # payments'


def test_messages_younger_than_the_limit_and_zero_days_keep_everything(make_app):
    app = make_app(MESSAGE_RETENTION_DAYS=0)
    for n in range(2):
        record_incoming(app, incoming(n))
    age(app, 400)
    assert retention.purge(app) == 0 and counts(app)["message"] == 2
    app = make_app(MESSAGE_RETENTION_DAYS=30)
    age(app, 29)
    assert retention.purge(app) == 0 and counts(app)["message"] == 2


def test_retention_is_a_periodic_job_of_the_serving_process(make_app, run_bot):
    app = make_app(MESSAGE_RETENTION_DAYS=1, MESSAGE_RETENTION_CHECK_SECONDS=0.1, BOT_ENABLED=False)
    assert any(job.id == retention.JOB_ID and job.seconds == 0.1 for job in jobs.jobs(app))
    for n in range(3):
        record_incoming(app, incoming(n))
    with app.app_context():
        queue_outgoing("张三", "queued", None)
    age(app, 2)
    run_bot(app)
    assert wait_for(lambda: counts(app)["message"] == 1, timeout=10), counts(app)
