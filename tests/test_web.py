"""The web surface without a running bot: probes, authentication, CSRF, the page."""
from __future__ import annotations

import pytest

from conftest import ADMIN_PASSWORD, csrf_token, sign_in


def test_healthz_answers_without_bot(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_ok_when_bot_not_required(client):
    assert client.get("/readyz").status_code == 200


def test_readyz_503_when_bot_required_and_not_logged_in(make_app):
    client = make_app(BOT_REQUIRED=True).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "BOT_REQUIRED" in response.get_json()["reason"]


@pytest.mark.parametrize("method, path", [
    ("get", "/api/bot"), ("get", "/api/bot/events"), ("get", "/api/bot/qr.png"),
    ("post", "/api/bot/login"), ("post", "/api/bot/logout"), ("post", "/api/bot/stop"), ("post", "/api/bot/start"),
])
def test_api_refuses_without_auth(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/json"


def test_wrong_bearer_token_refused(client):
    assert client.get("/api/bot", headers={"Authorization": "Bearer nope-nope-nope"}).status_code == 401


def test_bearer_token_reads_state(client, auth):
    body = client.get("/api/bot", headers=auth).get_json()
    assert set(body) == {"state", "since", "reason", "detail", "attempt", "next_retry_at", "qr_expires_at", "account",
                         "verify_code_required", "verify_code", "reason_code", "reason_params", "reason_zh"}


def test_controls_need_a_bot_in_this_process(client, auth):
    response = client.post("/api/bot/login", headers=auth)
    assert response.status_code == 503
    assert "does not run in this process" in response.get_json()["error"]


def test_session_post_without_csrf_is_refused(client):
    assert sign_in(client).status_code == 302
    assert client.get("/api/bot").status_code == 200
    response = client.post("/api/bot/stop")
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_session_post_with_csrf_passes(client):
    sign_in(client)
    token = csrf_token(client, "/")
    response = client.post("/api/bot/stop", data={"csrf_token": token}, headers={"Accept": "application/json"})
    assert response.status_code == 503  # past auth and CSRF; no bot runs in a test app


def test_wrong_password_then_rate_limited(client):
    for _ in range(5):
        assert sign_in(client, "wrong password!").status_code == 401
    assert sign_in(client, ADMIN_PASSWORD).status_code == 429


def test_login_form_without_csrf_refused(client):
    assert client.post("/login", data={"password": ADMIN_PASSWORD}).status_code == 400


def test_public_page_shows_no_admin_detail(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert "qr.png" not in html and 'id="events"' not in html
    assert "Set-Cookie" not in response.headers  # a mere visitor gets no session


def test_language_switch_keeps_the_page_and_its_filters(client):
    sign_in(client)
    html = client.get("/payments?status=unclaimed&lang=zh").get_data(as_text=True)
    assert 'href="/payments?status=unclaimed&amp;lang=en" id="lang-switch"' in html


def test_admin_page_shows_state_and_controls(client):
    sign_in(client)
    html = client.get("/?lang=en").get_data(as_text=True)
    assert 'id="state"' in html and 'id="events"' in html and "Log out of WeChat" in html


@pytest.mark.parametrize("header, expected", [("zh-CN,zh;q=0.9", "机器人"), ("en-US,en;q=0.9", "Bot is")])
def test_page_language_from_accept_language(client, header, expected):
    assert expected in client.get("/", headers={"Accept-Language": header}).get_data(as_text=True)


def test_events_paging_rejects_garbage(client, auth):
    response = client.get("/api/bot/events?limit=x", headers=auth)
    assert response.status_code == 400


def test_admin_header_links_to_payments(client):
    sign_in(client)
    html = client.get("/?lang=zh").get_data(as_text=True)
    assert 'id="nav-payments"' in html and "收款" in html
    assert client.get("/payments").status_code == 200
