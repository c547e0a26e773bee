"""Demo mode's simulated phone: the page's buttons drive the in-process emulator, the real wxpy logs in."""
from __future__ import annotations

import pytest

from conftest import csrf_token, sign_in, wait_for, wait_for_state


@pytest.fixture
def demo_app(make_app, run_bot):
    app = make_app(BOT_BACKEND="demo")
    run_bot(app)
    yield app
    app.extensions["geekai.emulator"].stop()


@pytest.fixture
def admin(demo_app):
    client = demo_app.test_client()
    sign_in(client)
    return client


def press(client, action, **form):
    """What the phone panel's form posts."""
    return client.post(f"/api/demo/phone/{action}", data={"csrf_token": csrf_token(client, "/"), **form},
                       headers={"Accept": "application/json"})


def test_the_phone_logs_the_bot_in_and_out_through_wxpy(demo_app, admin, auth):
    wait_for_state(admin, auth, "waiting_for_scan")
    assert press(admin, "scan").get_json() == {"ok": True, "phone": "scanned", "texts": []}
    wait_for_state(admin, auth, "waiting_for_confirm")
    assert press(admin, "confirm").get_json()["ok"]
    assert wait_for_state(admin, auth, "logged_in")["account"] == demo_app.extensions["geekai.emulator"].nickname
    assert press(admin, "logout").get_json()["ok"]
    wait_for_state(admin, auth, "starting", "waiting_for_scan")


def test_expiring_the_qr_brings_a_new_one(admin, auth):
    first = wait_for_state(admin, auth, "waiting_for_scan")
    assert press(admin, "expire").get_json()["ok"]
    assert wait_for(lambda: admin.get("/api/bot", headers=auth).get_json()["since"] != first["since"])
    assert "refresh 1" in wait_for_state(admin, auth, "waiting_for_scan")["reason"]


def test_a_text_from_the_phone_reaches_the_bot(demo_app, admin, auth):
    received = []
    demo_app.extensions["geekai.bot"].supervisor.handlers.append(received.append)
    wait_for_state(admin, auth, "waiting_for_scan")
    press(admin, "confirm")
    wait_for_state(admin, auth, "logged_in")
    view = press(admin, "send_text", text="你好").get_json()
    assert view["ok"] and view["texts"][0]["text"] == "你好"
    assert wait_for(lambda: received)
    assert received[0].text == "你好"
    assert wait_for(lambda: admin.get("/api/demo/phone").get_json()["texts"][0]["delivered"])


def test_texting_a_logged_out_bot_is_not_ok(admin, auth):
    wait_for_state(admin, auth, "waiting_for_scan")
    assert press(admin, "send_text", text="hello").get_json() == {"ok": False, "phone": "waiting_for_scan", "texts": []}


@pytest.mark.parametrize("text", ["", "   ", "x" * 501])
def test_text_must_be_sensible(admin, text):
    assert press(admin, "send_text", text=text).status_code == 400


def test_phone_needs_csrf(admin):
    response = admin.post("/api/demo/phone/scan")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)


def test_phone_needs_admin(demo_app):
    assert demo_app.test_client().post("/api/demo/phone/scan").status_code == 401
    assert demo_app.test_client().get("/api/demo/phone").status_code == 401


def test_page_shows_the_phone_in_demo_mode(admin):
    html = admin.get("/").get_data(as_text=True)
    assert 'id="phone"' in html and "/api/demo/phone/scan" in html


def test_no_phone_outside_demo_mode(client, auth):
    sign_in(client)
    assert client.get("/api/demo/phone").status_code == 404
    assert client.post("/api/demo/phone/scan", headers=auth).status_code == 404


def log_in(admin, auth):
    wait_for_state(admin, auth, "waiting_for_scan")
    press(admin, "confirm")
    wait_for_state(admin, auth, "logged_in")


def test_a_payment_notice_from_the_phone_pays_an_order_and_a_forged_one_is_rejected(admin, auth):
    log_in(admin, auth)
    order = admin.post("/api/orders", json={"amount": "12.30", "reference": "demo"}, headers=auth).get_json()
    view = press(admin, "pay", amount="12.30", note=f"订单 {order['code']}").get_json()
    assert view["ok"] and view["texts"][-1]["text"] == f"￥12.30 · 订单 {order['code']}"
    assert wait_for(lambda: admin.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "paid",
                    timeout=10)
    payment = admin.get("/api/payments", headers=auth).get_json()["payments"][0]
    assert payment["amount"] == "12.30" and payment["status"] == "matched" and len(payment["tx_id"]) == 28

    assert press(admin, "forge", amount="500", note="").get_json()["ok"]

    def judged():
        notices = admin.get("/api/payments/notices", headers=auth).get_json()["notices"]
        return [n for n in notices if n["status"] == "rejected"]
    rejected = wait_for(judged, timeout=10)
    assert len(rejected) == 1 and "VerifyFlag 0" in rejected[0]["reason"]
    assert len(admin.get("/api/payments", headers=auth).get_json()["payments"]) == 1  # the forgery booked nothing


@pytest.mark.parametrize("amount", ["", "abc", "0", "-1", "12.345", "1e3", "NaN", "100000.01"])
def test_a_payment_needs_a_sensible_amount(admin, auth, amount):
    log_in(admin, auth)
    answer = press(admin, "pay", amount=amount)
    assert answer.status_code == 400 and "amount" in answer.get_json()["error"]
    assert admin.get("/api/payments/notices", headers=auth).get_json()["notices"] == []


def test_paying_a_logged_out_bot_is_not_ok(admin, auth):
    wait_for_state(admin, auth, "waiting_for_scan")
    assert press(admin, "pay", amount="1.00").get_json()["ok"] is False


def test_the_ilink_demo_has_no_payments(make_app, run_bot):
    app = make_app(BOT_BACKEND="demo-ilink")
    run_bot(app)
    try:
        client = app.test_client()
        sign_in(client)
        assert press(client, "pay", amount="1.00").status_code == 404
        assert 'id="phone-pay"' not in client.get("/").get_data(as_text=True)
    finally:
        app.extensions["geekai.emulator"].stop()


@pytest.mark.parametrize("argv, environ, folder", [
    ([], {}, "instance"),
    (["--demo"], {}, "instance/demo"),
    (["--demo", "ilink"], {}, "instance/demo-ilink"),
    (["--demo", "--instance", "/srv/x"], {}, "/srv/x"),
    (["--demo"], {"GEEKAI_INSTANCE_PATH": "/srv/y"}, "/srv/y"),
])
def test_a_demo_keeps_its_own_instance_folder(monkeypatch, argv, environ, folder):
    """`make demo` (python app.py --demo): its logins, history and payments stay out of instance/."""
    import app as entry
    from conftest import ROOT_DIR

    monkeypatch.delenv("GEEKAI_INSTANCE_PATH", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    expected = folder if folder.startswith("/") else f"{ROOT_DIR}/{folder}"
    assert entry.instance_folder(entry.parse_args(argv)) == expected
