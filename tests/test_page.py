"""The status page as served: public vs admin, languages, counters, history, Secure cookies."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from conftest import record, sign_in
from geekai.db import db, utcnow
from geekai.models import BotEvent
from geekai.web.stats import bot_stats


def add_events(app, *transitions, start=None):
    """Append events (minutes_after_start, from, to, actor) to the history."""
    start = start or utcnow() - timedelta(hours=2)
    with app.app_context():
        for minutes, old, new, actor in transitions:
            db.session.add(BotEvent(at=start + timedelta(minutes=minutes), from_state=old, to_state=new,
                                    reason=f"{old} to {new}", actor=actor))
        db.session.commit()
    return start


def test_public_page_shows_only_up_or_down(client):
    html = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Service is up" in html and "Bot is not online" in html
    for secret in ('id="qr"', 'id="events"', 'id="account"', "status.js", "page-texts", 'id="counters"'):
        assert secret not in html


def test_admin_page_has_qr_slot_history_counters_and_csrf_protected_controls(client):
    sign_in(client)
    html = client.get("/?lang=en").get_data(as_text=True)
    for part in ('id="qr"', 'id="qr-countdown"', 'id="events"', 'id="counters"', "status.js", "page-texts"):
        assert part in html
    for command in ("login", "logout", "stop", "start"):
        assert f'action="/api/bot/{command}"' in html
    assert html.count('name="csrf_token"') >= 5
    assert 'id="phone"' not in html  # the simulated phone only exists in demo mode


def test_page_assets_are_local(client):
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "") and "https://" not in html
    for asset in ("/static/status.js", "/static/style.css", "/static/favicon.svg"):
        response = client.get(asset)
        assert response.status_code == 200
        response.close()


@pytest.mark.parametrize("header, expected", [
    ("zh-CN,zh;q=0.9,en;q=0.5", "服务运行中"),
    ("en-US,en;q=0.9", "Service is up"),
    ("", "服务运行中"),  # GeekAI's users are mostly Chinese-speaking
])
def test_language_follows_accept_language(client, header, expected):
    assert expected in client.get("/", headers={"Accept-Language": header}).get_data(as_text=True)


def test_language_switch_wins_and_is_remembered(client):
    response = client.get("/?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "Service is up" in response.get_data(as_text=True)
    assert "lang=en" in response.headers["Set-Cookie"]
    assert "Service is up" in client.get("/", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)


def test_both_languages_have_every_text():
    from geekai.web.i18n import TEXT
    assert all(set(entry) == {"zh", "en"} and all(entry.values()) for entry in TEXT.values())


def test_needs_login_offers_a_new_qr(app, client):
    record(app, "waiting_for_scan", "needs_login",
                               "the login QR expired 11 times with nobody scanning it")
    sign_in(client)
    html = client.get("/?lang=en").get_data(as_text=True)
    panel = html.split('id="panel-needs-login"', 1)[1].split("</div>", 1)[0]
    assert "hidden" not in panel.split(">", 1)[0]
    assert "Get a new QR" in panel and 'action="/api/bot/login"' in panel
    assert "expired 11 times" in html


def test_failure_detail_is_folded(app, client):
    record(app, "starting", "error", "wxpy is missing", detail="Traceback (most recent call last):\n  boom")
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert "<details" in html and "Traceback (most recent call last)" in html


def test_history_offers_older_pages_past_twenty(app, client):
    add_events(app, *[(i, "starting", "retrying", "bot") for i in range(25)])
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert html.count("<tr data-id=") == 20
    assert 'id="older"' in html and "before=" in html


def test_counters_count_logins_failures_and_uptime(app):
    start = add_events(app,
                       (0, "stopped", "starting", "system"),
                       (10, "starting", "logged_in", "bot"),
                       (70, "logged_in", "retrying", "bot"),          # a failure: dropped
                       (80, "retrying", "starting", "bot"),
                       (90, "starting", "logged_in", "bot"),
                       (100, "logged_in", "needs_login", "admin (web)"),  # an admin's logout
                       (110, "needs_login", "starting", "admin (web)"),
                       (115, "starting", "error", "bot"))              # a failure
    with app.app_context():
        stats = bot_stats(now=start + timedelta(minutes=120))
    day = stats["24h"]
    assert day["logins"] == 2 and day["failures"] == 2
    assert day["uptime_percent"] == round(100 * 70 / 120, 1)  # 60 + 10 of the 120 minutes observed
    assert stats["7d"] == day


def test_uptime_counts_the_state_held_when_the_window_opened(app):
    start = add_events(app, (0, "starting", "logged_in", "bot"))
    with app.app_context():
        stats = bot_stats(now=start + timedelta(days=2))
    assert stats["24h"]["uptime_percent"] == 100.0 and stats["24h"]["logins"] == 0
    assert stats["7d"]["logins"] == 1


def test_uptime_is_unknown_until_an_hour_was_observed(app):
    """Just after the first login the service has existed for minutes: no 0.1% over a day it never ran."""
    start = add_events(app, (0, "stopped", "starting", "system"), (1, "starting", "logged_in", "bot"))
    with app.app_context():
        assert bot_stats(now=start + timedelta(minutes=59))["24h"]["uptime_percent"] is None
        assert bot_stats(now=start + timedelta(minutes=61))["24h"]["uptime_percent"] == round(100 * 60 / 61, 1)


def test_uptime_unknown_without_history(app, client, auth):
    assert client.get("/api/bot/stats", headers=auth).get_json()["24h"] == \
        {"logins": 0, "failures": 0, "uptime_percent": None}


def test_stats_need_admin(client):
    assert client.get("/api/bot/stats").status_code == 401


def session_cookie(response) -> str:
    return next(value for value in response.headers.getlist("Set-Cookie") if value.startswith("session="))


def test_session_cookie_is_httponly_lax_and_not_secure_over_http(client):
    cookie = session_cookie(sign_in(client))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_over_https(client):
    from conftest import ADMIN_PASSWORD
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/login", base_url="https://localhost", headers={"Referer": "https://localhost/login"},
                           data={"password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and "Secure" in session_cookie(response)


def test_alert_card_shows_open_incident_and_failed_deliveries(make_app):
    from geekai import outbox
    from geekai.alerts.models import Incident

    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", OUTBOX_MAX_ATTEMPTS=1)
    with app.app_context():
        db.session.add(Incident(kind="down", state="retrying", reason="WeChat ended the session"))
        outbox.enqueue("alert.webhook", "http", "http://127.0.0.1:9/hook", {"x": 1}, key="incident-1-opened-webhook")
        db.session.commit()
    outbox.deliver_due(app)  # the receiver is down: one attempt, then failed
    client = app.test_client()
    sign_in(client)
    html = client.get("/?lang=en").get_data(as_text=True)
    assert re.search(r'id="alert-channels">\s*webhook', html)
    assert "#1 bot offline: WeChat ended the session" in html
    assert "#1 机器人掉线: 微信结束了会话" in client.get("/?lang=zh").get_data(as_text=True)
    assert re.search(r'id="alerts-failed" class="error">1', html) and "see the deliveries" in html


def test_alert_card_warns_when_no_channel_is_configured(client):
    sign_in(client)
    assert "nobody hears of a dead bot" in client.get("/?lang=en").get_data(as_text=True)


def test_every_time_on_the_pages_is_china_time_and_says_so(app, client):
    """One rule for the status page, the payments pages and the CLI (geekai/display_time.py)."""
    from geekai.display_time import shown

    add_events(app, (0, "stopped", "starting", "system"))
    sign_in(client)
    for lang, label in (("zh", "北京时间（UTC+8）"), ("en", "China time (UTC+8)")):
        for path in ("/", "/payments", "/orders", "/deliveries"):
            assert label in client.get(f"{path}?lang={lang}").get_data(as_text=True), (path, lang)
    at = client.get("/api/bot/events").get_json()["events"][0]["at"]
    assert shown(at) in client.get("/").get_data(as_text=True)
    assert shown("2026-01-01T16:30:00Z") == "2026-01-02 00:30:00"
    assert shown("2026-01-01T16:30:00") == "2026-01-02 00:30:00"  # naive: UTC, as the database keeps it
