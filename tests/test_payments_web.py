"""The payments API and admin pages: auth, filters, pulls, deliveries and retries, CSV, income."""
from __future__ import annotations

import csv
import io
import re
import time

import pytest

from conftest import sign_in
from geekai import outbox
from geekai.jobs import message_handlers
from payment_helpers import FORGER, message, receipt_xml
from receivers import WebhookReceiver

SECRET = "callback-secret-123"


@pytest.fixture
def pay_app(make_app):
    return make_app(PAYMENT_CALLBACK_URL="http://127.0.0.1:9/hook", PAYMENT_CALLBACK_SECRET=SECRET,
                    OUTBOX_TIMEOUT_SECONDS=0.5, OUTBOX_MAX_ATTEMPTS=1)


def deliver(app, msg):
    for handler in message_handlers(app):
        handler(msg)


@pytest.mark.parametrize("method, path", [
    ("get", "/api/payments"), ("get", "/api/payments/notices"), ("post", "/api/orders"), ("get", "/api/orders/1"),
    ("get", "/api/orders"), ("post", "/api/payments/x/claim"), ("get", "/api/deliveries"),
    ("post", "/api/deliveries/1/retry"),
])
def test_api_needs_admin(pay_app, method, path):
    assert getattr(pay_app.test_client(), method)(path).status_code == 401


@pytest.mark.parametrize("path", ["/payments", "/orders", "/deliveries", "/payments.csv"])
def test_pages_send_strangers_to_login(pay_app, path):
    response = pay_app.test_client().get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("body", [{"amount": 12}, {"amount": 12.5}, {"amount": "1.234"}, {"amount": "-1"},
                                  {"amount": "abc"}, {"amount": "0"}, {}, {"amount": "1", "reference": 5}])
def test_bad_order_refused(pay_app, auth, body):
    response = pay_app.test_client().post("/api/orders", json=body, headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]


def test_pull_with_since_status_and_after_id(pay_app, auth):
    client = pay_app.test_client()
    for n in range(3):
        deliver(pay_app, message(receipt_xml(f"42000012342024091000000002{n:02d}", "0.01")))
    everything = client.get("/api/payments", headers=auth).get_json()
    assert [p["amount"] for p in everything["payments"]] == ["0.01"] * 3
    first = client.get("/api/payments?limit=2", headers=auth).get_json()
    assert len(first["payments"]) == 2 and first["next_after_id"]
    rest = client.get(f"/api/payments?after_id={first['next_after_id']}", headers=auth).get_json()
    assert len(rest["payments"]) == 1 and rest["next_after_id"] is None
    assert client.get("/api/payments?since=2999-01-01T00:00:00Z", headers=auth).get_json()["payments"] == []
    assert len(client.get("/api/payments?since=2000-01-01", headers=auth).get_json()["payments"]) == 3
    assert client.get("/api/payments?status=claimed", headers=auth).get_json()["payments"] == []
    assert client.get("/api/payments?status=bogus", headers=auth).status_code == 400
    assert client.get("/api/payments?since=yesterday", headers=auth).status_code == 400


def test_notices_list_shows_rejected_with_raw_content(pay_app, auth):
    deliver(pay_app, message(receipt_xml("4200001234202409100000000301"), FORGER))
    notices = pay_app.test_client().get("/api/payments/notices?status=rejected&content=1", headers=auth).get_json()
    [notice] = notices["notices"]
    assert notice["tx_id"] == "4200001234202409100000000301" and notice["content"].startswith("<msg>")


def test_failed_delivery_is_listed_and_retried_by_hand(pay_app, auth):
    client = pay_app.test_client()
    deliver(pay_app, message(receipt_xml("4200001234202409100000000302")))
    outbox.deliver_due(pay_app)  # nobody listens on port 9; one attempt allowed
    [failed] = client.get("/api/deliveries?status=failed", headers=auth).get_json()["deliveries"]
    assert failed["topic"] == "payment.received" and failed["attempts"] == 1 and failed["last_error"]
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        pay_app.config["PAYMENT_CALLBACK_URL"] = receiver.url
        from geekai.db import db
        from geekai.outbox import OutboxMessage
        with pay_app.app_context():  # the receiver moved: point the queued message at it
            db.session.execute(db.update(OutboxMessage).values(target=receiver.url))
            db.session.commit()
        retried = client.post(f"/api/deliveries/{failed['id']}/retry", headers=auth)
        assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
        assert outbox.deliver_due(pay_app) == 1
        assert receiver.verify(receiver.accepted()[0])
        assert client.post(f"/api/deliveries/{failed['id']}/retry", headers=auth).status_code == 409
        assert client.post("/api/deliveries/999/retry", headers=auth).status_code == 404
    finally:
        receiver.stop()


def test_deliveries_page_retry_button(pay_app):
    client = pay_app.test_client()
    deliver(pay_app, message(receipt_xml("4200001234202409100000000303")))
    outbox.deliver_due(pay_app)
    sign_in(client)
    page = client.get("/deliveries?lang=en").get_data(as_text=True)
    assert "payment.received" in page and "Retry" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    action = re.search(r'action="(/api/deliveries/\d+/retry[^"]*)"', page).group(1)
    assert client.post(action.replace("&amp;", "&"), data={}).status_code == 400   # no CSRF token
    assert client.post(action.replace("&amp;", "&"), data={"csrf_token": token}).status_code == 302
    assert "pending" in client.get("/api/deliveries", headers={"Authorization": "Bearer test-token-0123456789"}).get_data(as_text=True)


def test_payments_page_income_filters_and_csv(pay_app, auth):
    client = pay_app.test_client()
    now = int(time.time())
    deliver(pay_app, message(receipt_xml("4200001234202409100000000304", "10.00", note="=HYPERLINK()"), create_time=now))
    deliver(pay_app, message(receipt_xml("4200001234202409100000000305", "2.50"), create_time=now - 3 * 86400))
    deliver(pay_app, message(receipt_xml("4200001234202409100000000306", "1.00"), create_time=now - 30 * 86400))
    deliver(pay_app, message(receipt_xml("4200001234202409100000000307"), FORGER))
    sign_in(client)
    zh = client.get("/payments?lang=zh").get_data(as_text=True)
    assert "今日收入" in zh
    en = client.get("/payments?lang=en").get_data(as_text=True)
    assert re.search(r'id="income-today">¥10\.00<', en) and re.search(r'id="income-week">¥12\.50<', en)
    assert "rejected" in en and "4200001234202409100000000306" in en
    claimed = client.get("/payments?status=claimed&lang=en").get_data(as_text=True)
    assert "4200001234202409100000000304" not in claimed
    response = client.get("/payments.csv")
    assert response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert table[0][:2] == ["tx_id", "amount"]
    assert {row[1] for row in table[1:]} == {"10.00", "2.50", "1.00"}
    assert "'=HYPERLINK()" in [row[2] for row in table]   # no formula injection


def test_orders_page_lists_orders(pay_app, auth):
    client = pay_app.test_client()
    order = client.post("/api/orders", json={"amount": "3.00", "reference": "r-9"}, headers=auth).get_json()
    sign_in(client)
    page = client.get("/orders?status=pending&lang=en").get_data(as_text=True)
    assert order["code"] in page and "r-9" in page
    assert order["code"] not in client.get("/orders?status=paid").get_data(as_text=True)
    listed = client.get("/api/orders?status=pending", headers=auth).get_json()["orders"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert client.get("/api/orders/999", headers=auth).status_code == 404
