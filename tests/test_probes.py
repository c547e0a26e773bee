"""Liveness never depends on the bot; readiness does only when BOT_REQUIRED."""
from __future__ import annotations

from conftest import log_in_by_scan, wait_for_state


def test_healthz_ignores_the_bot(make_app):
    client = make_app(BOT_REQUIRED=True).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_ready_without_bot_required(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_waits_for_login_when_bot_required(make_app, run_bot, emulator, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_REQUIRED=True)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready", "reason": "BOT_REQUIRED and the bot is stopped"}
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.get("/readyz").status_code == 503
    assert client.get("/").status_code == 200  # the page (and its login) stays up for the admin
    log_in_by_scan(client, auth, emulator)
    assert client.get("/readyz").status_code == 200
    emulator.logout()
    wait_for_state(client, auth, "starting", "waiting_for_scan")
    assert client.get("/readyz").status_code == 503


def test_readyz_fails_when_the_database_does_not_answer(app, monkeypatch):
    from geekai.db import db

    client = app.test_client()

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    with app.app_context():
        monkeypatch.setattr(db.session, "execute", broken)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("database unavailable")
