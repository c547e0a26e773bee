"""Recording WeChat Pay notices: sender check, ledger, redelivery, orders, claims, expiry, callbacks."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from geekai import outbox
from geekai.db import db, utcnow
from geekai.outbox import OutboxMessage
from geekai.payments import ledger, recorder
from geekai.payments.models import CODE_ALPHABET, Order, Payment, PaymentNotice
from payment_helpers import ASSISTANT, FORGER, GROUP, OFFICIAL, as_web_wechat, message, receipt_xml, refund_xml
from receivers import WebhookReceiver
from conftest import CALLBACK_SECRET, sign_in

SECRET = CALLBACK_SECRET
QUICK = {"OUTBOX_RETRY_FIRST_SECONDS": 0.01, "OUTBOX_RETRY_MAX_SECONDS": 0.05, "OUTBOX_TIMEOUT_SECONDS": 1,
         "ORDER_EXPIRY_GRACE_SECONDS": 0}


@pytest.fixture
def pay_app(make_app, receiver):
    return make_app(PAYMENT_CALLBACK_URL=receiver.url, PAYMENT_CALLBACK_SECRET=SECRET, **QUICK)


def deliver(app, msg):
    """Hand a message to the registered handlers, as the bot's listener does."""
    from geekai.jobs import message_handlers
    for handler in message_handlers(app):
        handler(msg)


def rows(app, model, *where):
    with app.app_context():
        found = db.session.execute(db.select(model).where(*where).order_by(model.id)).scalars().all()
        db.session.expunge_all()
        return found


def create_order(client, auth, amount="12.00", reference="ref-1", **extra):
    response = client.post("/api/orders", json={"amount": amount, "reference": reference, **extra}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# ----- ledger ------------------------------------------------------------------------------

@pytest.mark.parametrize("contact", [OFFICIAL, ASSISTANT])
def test_receipt_from_wechat_pay_is_booked(pay_app, contact):
    deliver(pay_app, message(receipt_xml("4200001234202409100000000001", "25.50", note="hi"), contact))
    [payment] = rows(pay_app, Payment)
    assert (payment.tx_id, payment.amount_cents, payment.note, payment.status) == (
        "4200001234202409100000000001", 2550, "hi", "unclaimed")
    [notice] = rows(pay_app, PaymentNotice)
    assert notice.status == "accepted" and notice.payment_id == payment.id
    assert notice.content.startswith("<msg>")  # the raw message is kept as it came


def test_web_wechat_escaped_content_is_booked(pay_app):
    deliver(pay_app, message(as_web_wechat(receipt_xml("4200001234202409100000000002", "0.01"))))
    assert [p.amount_cents for p in rows(pay_app, Payment)] == [1]


@pytest.mark.parametrize("contact", [FORGER, GROUP])
def test_forged_sender_is_rejected_and_cannot_block_the_genuine_receipt(pay_app, contact):
    tx_id = "4200001234202409100000000003"
    deliver(pay_app, message(receipt_xml(tx_id, "999.00"), contact))
    assert rows(pay_app, Payment) == []
    [forged] = rows(pay_app, PaymentNotice)
    assert forged.status == "rejected"
    assert "not WeChat's verified" in forged.reason and "VerifyFlag 0" in forged.reason
    assert forged.tx_id == tx_id  # what it claimed, for the admin to see
    deliver(pay_app, message(receipt_xml(tx_id, "1.00"), OFFICIAL))
    [payment] = rows(pay_app, Payment)
    assert payment.amount_cents == 100
    with pay_app.app_context():
        assert not db.session.execute(db.select(OutboxMessage).where(OutboxMessage.payload.contains("999.00"))).first()


def test_ten_redeliveries_of_one_message_store_one_row(pay_app):
    msg = message(receipt_xml("4200001234202409100000000004"))
    for _ in range(10):
        deliver(pay_app, msg)
    assert len(rows(pay_app, Payment)) == 1
    assert len(rows(pay_app, PaymentNotice)) == 1
    assert len(rows(pay_app, OutboxMessage)) == 1


def test_ten_copies_under_new_message_ids_book_one_payment(pay_app):
    for _ in range(10):
        deliver(pay_app, message(receipt_xml("4200001234202409100000000005")))
    [payment] = rows(pay_app, Payment)
    notices = rows(pay_app, PaymentNotice)
    assert [n.status for n in notices] == ["accepted"] + ["duplicate"] * 9
    assert all(n.payment_id == payment.id for n in notices)
    assert len(rows(pay_app, OutboxMessage)) == 1


def test_refund_is_kept_as_ignored_and_garbage_as_unparsed(pay_app):
    deliver(pay_app, message(refund_xml("4200001234202409100000000006")))
    deliver(pay_app, message("<msg><appmsg><title>微信支付收款</title><des>收款金额￥?</des></appmsg></msg>"))
    assert rows(pay_app, Payment) == []
    assert [(n.status, bool(n.reason), bool(n.content)) for n in rows(pay_app, PaymentNotice)] == [
        ("ignored", True, True), ("unparsed", True, True)]


def test_unrelated_messages_are_not_stored(pay_app):
    friend = {"UserName": "@" + "e5" * 16, "NickName": "Alice", "VerifyFlag": 0}
    deliver(pay_app, message("hello 收款金额￥5.00", FORGER, msg_type=1))   # plain text
    deliver(pay_app, message("<msg><appmsg><title>a shared article</title></appmsg></msg>", friend))
    assert rows(pay_app, PaymentNotice) == []
    deliver(pay_app, message("<msg><appmsg><title>anything at all</title></appmsg></msg>", FORGER))
    assert [n.status for n in rows(pay_app, PaymentNotice)] == ["rejected"]  # it poses as WeChat Pay


def test_notice_left_received_by_a_crash_is_recovered(pay_app):
    with pay_app.app_context():
        notice_id = recorder.store(message(receipt_xml("4200001234202409100000000007"))).id  # then "crash"
        db.session.execute(db.update(PaymentNotice).values(stored_at=utcnow() - timedelta(minutes=5)))
        db.session.commit()
    assert rows(pay_app, Payment) == []
    assert recorder.recover_notices(pay_app) == 1
    assert [p.tx_id for p in rows(pay_app, Payment)] == ["4200001234202409100000000007"]
    assert rows(pay_app, PaymentNotice, PaymentNotice.id == notice_id)[0].status == "accepted"


# ----- orders ------------------------------------------------------------------------------

def test_order_code_is_short_upper_case_and_unambiguous(pay_app, auth):
    client = pay_app.test_client()
    codes = {create_order(client, auth, reference=f"r{n}")["code"] for n in range(30)}
    assert len(codes) == 30
    assert all(re.fullmatch(f"[{CODE_ALPHABET}]{{6}}", code) for code in codes)
    assert not set("".join(codes)) & set("0O1IL")


def test_payment_with_code_in_note_pays_the_order(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="12.00", reference="user-42")
    assert order["status"] == "pending" and order["amount"] == "12.00"
    note = "订单 " + " ".join(order["code"].lower())   # lower case, spaced out
    deliver(pay_app, message(receipt_xml("4200001234202409100000000010", "12.00", note=note),
                             create_time=int(time.time())))
    answer = client.get(f"/api/orders/{order['id']}", headers=auth).get_json()
    assert answer["status"] == "paid"
    assert answer["payment"]["tx_id"] == "4200001234202409100000000010"
    assert answer["payment"]["status"] == "matched" and answer["payment"]["amount"] == "12.00"


def test_order_list_shows_the_payment_of_a_paid_order(pay_app, auth):
    client = pay_app.test_client()
    paid, pending = create_order(client, auth, amount="4.00"), create_order(client, auth, amount="5.00")
    deliver(pay_app, message(receipt_xml("4200001234202409100000000013", "4.00", note=paid["code"]),
                             create_time=int(time.time())))
    listed = {o["id"]: o for o in client.get("/api/orders", headers=auth).get_json()["orders"]}
    assert listed[paid["id"]]["payment"]["tx_id"] == "4200001234202409100000000013"
    assert listed[paid["id"]] == client.get(f"/api/orders/{paid['id']}", headers=auth).get_json()
    assert listed[pending["id"]]["payment"] is None


def test_wrong_amount_or_missing_code_leaves_the_order_pending(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="12.00")
    now = int(time.time())
    deliver(pay_app, message(receipt_xml("4200001234202409100000000011", "11.99", note=order["code"]), create_time=now))
    deliver(pay_app, message(receipt_xml("4200001234202409100000000012", "12.00", note="no code"), create_time=now))
    assert client.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "pending"
    assert {p.status for p in rows(pay_app, Payment)} == {"unclaimed"}


def test_second_payment_for_a_paid_order_is_not_credited_again(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="5.00")
    now = int(time.time())
    for n in (20, 21):
        deliver(pay_app, message(receipt_xml(f"42000012342024091000000000{n}", "5.00", note=order["code"]),
                                 create_time=now))
    assert [p.status for p in rows(pay_app, Payment)] == ["matched", "unclaimed"]


def test_orders_expire_and_a_late_payment_is_not_matched(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="3.00", ttl_seconds=10)
    with pay_app.app_context():
        db.session.execute(db.update(Order).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert ledger.expire_orders(pay_app) == 1
    assert ledger.expire_orders(pay_app) == 0
    assert client.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "expired"
    deliver(pay_app, message(receipt_xml("4200001234202409100000000030", "3.00", note=order["code"]),
                             create_time=int(time.time())))
    assert rows(pay_app, Payment)[0].status == "unclaimed"
    topics = [m.topic for m in rows(pay_app, OutboxMessage)]
    assert topics == ["order.expired", "payment.received"]


# ----- claims ------------------------------------------------------------------------------

def test_claim_once_then_409(pay_app, auth):
    client = pay_app.test_client()
    deliver(pay_app, message(receipt_xml("4200001234202409100000000040", "8.00")))
    first = client.post("/api/payments/4200001234202409100000000040/claim", json={"claimed_by": "user-7"}, headers=auth)
    assert first.status_code == 200
    assert first.get_json()["payment"]["status"] == "claimed"
    second = client.post("/api/payments/4200001234202409100000000040/claim", json={"claimed_by": "user-8"}, headers=auth)
    assert second.status_code == 409
    assert "already claimed" in second.get_json()["error"] and "user-7" in second.get_json()["error"]
    assert client.post("/api/payments/nope/claim", headers=auth).status_code == 404


def test_claim_for_an_order_pays_it(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="8.00")
    deliver(pay_app, message(receipt_xml("4200001234202409100000000041", "8.00")))
    answer = client.post("/api/payments/4200001234202409100000000041/claim", json={"order_id": order["id"]},
                         headers=auth)
    assert answer.status_code == 200 and answer.get_json()["order"]["status"] == "paid"
    deliver(pay_app, message(receipt_xml("4200001234202409100000000042", "8.00")))
    again = client.post("/api/payments/4200001234202409100000000042/claim", json={"order_id": order["id"]},
                        headers=auth)
    assert again.status_code == 409 and "not pending" in again.get_json()["error"]
    assert rows(pay_app, Payment, Payment.tx_id == "4200001234202409100000000042")[0].status == "unclaimed"


def test_claim_of_a_matched_payment_is_refused(pay_app, auth):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="2.00")
    deliver(pay_app, message(receipt_xml("4200001234202409100000000043", "2.00", note=order["code"]),
                             create_time=int(time.time())))
    refused = client.post("/api/payments/4200001234202409100000000043/claim", headers=auth)
    assert refused.status_code == 409 and "automatically" in refused.get_json()["error"]


# ----- callbacks ---------------------------------------------------------------------------

def test_receiver_down_then_up_gets_every_event_once_signed(pay_app, auth, receiver):
    client = pay_app.test_client()
    receiver.stop()
    orders = [create_order(client, auth, amount="1.00", reference=f"r{n}") for n in range(3)]
    now = int(time.time())
    for n, order in enumerate(orders):
        deliver(pay_app, message(receipt_xml(f"42000012342024091000000001{n:02d}", "1.00", note=order["code"]),
                                 create_time=now))
        deliver(pay_app, message(receipt_xml(f"42000012342024091000000001{n:02d}", "1.00", note=order["code"]),
                                 create_time=now))  # a duplicate: no second event
    for _ in range(3):
        outbox.deliver_due(pay_app)
        with pay_app.app_context():
            db.session.execute(db.update(OutboxMessage).values(next_attempt_at=utcnow()))
            db.session.commit()
    assert receiver.accepted() == []
    receiver.start()
    deadline = time.monotonic() + 10
    while len(receiver.events_by_key()) < 6 and time.monotonic() < deadline:
        outbox.deliver_due(pay_app)
        time.sleep(0.06)
    grouped = receiver.events_by_key()
    assert all(len(copies) == 1 for copies in grouped.values())
    assert all(receiver.verify(r) for r in receiver.accepted())
    events = [WebhookReceiver.json(r) for r in receiver.accepted()]
    assert sorted(e["type"] for e in events) == ["order.paid"] * 3 + ["payment.received"] * 3
    assert all(e["id"] == r["headers"]["idempotency-key"] for e, r in zip(events, receiver.accepted()))
    paid = {e["data"]["order"]["id"]: e["data"]["order"] for e in events if e["type"] == "order.paid"}
    assert sorted(paid) == sorted(o["id"] for o in orders)
    assert all(o["status"] == "paid" and o["payment"]["amount"] == "1.00" for o in paid.values())


def test_callback_url_without_secret_stops_start_up(make_app):
    from geekai.config import ConfigError
    with pytest.raises(ConfigError, match="PAYMENT_CALLBACK_SECRET"):
        make_app(PAYMENT_CALLBACK_URL="http://127.0.0.1:9/hook")


def test_no_callback_url_queues_nothing(make_app):
    app = make_app()
    deliver(app, message(receipt_xml("4200001234202409100000000050")))
    assert len(rows(app, Payment)) == 1 and rows(app, OutboxMessage) == []


def test_event_body_is_what_the_signature_covers(pay_app, receiver):
    deliver(pay_app, message(receipt_xml("4200001234202409100000000051", "66.60", note="备注")))
    outbox.deliver_due(pay_app)
    [request] = receiver.accepted()
    event = json.loads(request["body"])
    assert event["type"] == "payment.received" and event["id"] == "payment.received:4200001234202409100000000051"
    assert event["data"]["payment"]["amount"] == "66.60" and event["data"]["payment"]["note"] == "备注"
    assert receiver.verify(request)


def test_a_locked_database_when_storing_is_retried(pay_app, monkeypatch):
    from sqlalchemy.exc import OperationalError
    real_store, calls = recorder.store, []

    def flaky_store(msg):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_store(msg)

    monkeypatch.setattr(recorder, "store", flaky_store)
    deliver(pay_app, message(receipt_xml("4200001234202409100000000060")))
    assert len(calls) == 2 and len(rows(pay_app, Payment)) == 1


@pytest.mark.parametrize("body", [[1], "user-7", 5, [{"order_id": 1}]])
def test_claim_with_a_body_that_is_not_an_object_is_400(pay_app, auth, body):
    client = pay_app.test_client()
    deliver(pay_app, message(receipt_xml("4200001234202409100000000044", "8.00")))
    answer = client.post("/api/payments/4200001234202409100000000044/claim", json=body, headers=auth)
    assert answer.status_code == 400 and answer.get_json()["error"]
    assert rows(pay_app, Payment)[0].status == "unclaimed"


@pytest.mark.parametrize("order_id, status, words", [
    (99999, 404, "no such order"), ("abc", 400, "whole number"), (True, 400, "whole number"),
    (-3, 400, "whole number"), ("wrong-amount", 409, "different amount"),
])
def test_claim_for_a_bad_order_is_refused_and_leaves_the_payment_unclaimed(pay_app, auth, order_id, status, words):
    client = pay_app.test_client()
    order = create_order(client, auth, amount="9.00")
    deliver(pay_app, message(receipt_xml("4200001234202409100000000045", "8.00")))
    if order_id == "wrong-amount":
        order_id = order["id"]
    answer = client.post("/api/payments/4200001234202409100000000045/claim", json={"order_id": order_id},
                         headers=auth)
    assert answer.status_code == status and words in answer.get_json()["error"]
    assert rows(pay_app, Payment)[0].status == "unclaimed"
    assert client.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "pending"


def test_date_filters_take_whole_china_days_of_the_received_time(pay_app, auth):
    china = timezone(timedelta(hours=8))
    client = pay_app.test_client()
    now = int(time.time())
    # Paid 2024-09-10 10:56 in China, but its notice reached us only now.
    deliver(pay_app, message(receipt_xml("4200001234202409100000000070", "1.00"), create_time=1725936978))
    deliver(pay_app, message(receipt_xml("4200001234202409100000000071", "2.00"), create_time=now))
    today = datetime.now(china).date().isoformat()

    def tx_ids(query):
        answer = client.get(f"/api/payments?{query}", headers=auth)
        assert answer.status_code == 200
        return [p["tx_id"][-2:] for p in answer.get_json()["payments"]]

    assert tx_ids(f"since={today}&until={today}") == ["71"]       # until=today includes today
    assert tx_ids("since=2024-09-10&until=2024-09-10") == ["70"]  # by when it was paid, not stored
    assert tx_ids("until=2024-09-09") == []
    assert tx_ids("since=2024-09-11") == ["71"]
    assert tx_ids("until=2024-09-10T02:56:18Z") == [] and tx_ids("until=2024-09-10T02:56:19Z") == ["70"]
    sign_in(client)
    page = client.get(f"/payments?until={today}").get_data(as_text=True)
    assert "4200001234202409100000000071" in page and "4200001234202409100000000070" in page


# ----- amounts -----------------------------------------------------------------------------

def test_amount_columns_are_64_bit_on_postgresql():
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    for model in (Payment, Order, PaymentNotice):
        ddl = str(CreateTable(model.__table__).compile(dialect=postgresql.dialect()))
        assert re.search(r"amount_cents BIGINT", ddl), ddl


@pytest.mark.parametrize("amount", ["1e2", "1E2", "1_000", "NaN", "Infinity", "0x10", "1,000.00", "１２"])
def test_order_amount_must_be_plain_decimal_digits(pay_app, auth, amount):
    answer = pay_app.test_client().post("/api/orders", json={"amount": amount}, headers=auth)
    assert answer.status_code == 400 and "amount" in answer.get_json()["error"]


def test_the_api_and_the_parser_share_one_amount_limit(pay_app, auth):
    from geekai.payments.parser import MAX_AMOUNT_CENTS, amount_to_str, parse_notice
    client = pay_app.test_client()
    largest, too_large = amount_to_str(MAX_AMOUNT_CENTS - 1), amount_to_str(MAX_AMOUNT_CENTS)
    assert create_order(client, auth, amount=largest)["amount"] == largest
    assert client.post("/api/orders", json={"amount": too_large}, headers=auth).status_code == 400
    assert parse_notice(receipt_xml("4200001234202409100000000080", largest)).amount_cents == MAX_AMOUNT_CENTS - 1
    refused = parse_notice(receipt_xml("4200001234202409100000000081", too_large))
    assert refused.kind == "unparsed" and "too large" in refused.reason
    deliver(pay_app, message(receipt_xml("4200001234202409100000000080", largest)))
    assert rows(pay_app, Payment)[0].amount_cents == MAX_AMOUNT_CENTS - 1
