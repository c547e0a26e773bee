"""/metrics: access modes, and values that follow the bot, the database and the traffic."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import API_TOKEN, log_in_by_scan, wait_for, wait_for_state


def scrape(client, **headers) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def value(samples: dict, name: str, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_open_by_default(client):
    samples = scrape(client)
    assert value(samples, "geekai_bot_state", state="stopped") == 1
    assert value(samples, "geekai_bot_state", state="logged_in") == 0
    assert value(samples, "geekai_database_up") == 1


@pytest.mark.parametrize("mode, headers, status", [
    ("token", {}, 401),
    ("token", {"Authorization": "Bearer wrong-token-123"}, 401),
    ("token", {"Authorization": f"Bearer {API_TOKEN}"}, 200),
    ("off", {"Authorization": f"Bearer {API_TOKEN}"}, 404),
])
def test_access_modes(make_app, mode, headers, status):
    client = make_app(METRICS=mode).test_client()
    assert client.get("/metrics", headers=headers).status_code == status


def test_http_requests_by_endpoint_and_status(client):
    client.get("/healthz")
    client.get("/healthz")
    client.get("/api/bot")  # 401 without the token
    client.get("/no/such/page")
    samples = scrape(client)
    assert value(samples, "geekai_http_requests_total", endpoint="health.healthz", method="GET", status="200") == 2
    assert value(samples, "geekai_http_requests_total", endpoint="api.bot_state", method="GET", status="401") == 1
    assert value(samples, "geekai_http_requests_total", endpoint="<unmatched>", method="GET", status="404") == 1
    assert value(samples, "geekai_http_request_duration_seconds_count", endpoint="health.healthz") == 2


def test_registries_are_per_app(make_app):
    first, second = make_app().test_client(), make_app().test_client()
    first.get("/healthz")
    assert value(scrape(second), "geekai_http_requests_total", endpoint="health.healthz", method="GET",
                 status="200") is None


def test_values_follow_the_bot(bot_app, run_bot, emulator, auth):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    samples = scrape(client)
    assert value(samples, "geekai_bot_state", state="logged_in") == 1
    assert value(samples, "geekai_bot_login_attempts_total", result="success") == 1
    assert value(samples, "geekai_bot_transitions_total", from_state="waiting_for_confirm", to_state="logged_in") == 1
    assert 0 <= value(samples, "geekai_bot_last_sync_age_seconds") < 5

    emulator.send_text("hello")
    assert wait_for(lambda: value(scrape(client), "geekai_bot_messages_total", direction="in") == 1)

    emulator.logout()
    wait_for_state(client, auth, "waiting_for_scan")
    samples = scrape(client)
    assert value(samples, "geekai_bot_state", state="logged_in") == 0
    assert value(samples, "geekai_bot_state", state="waiting_for_scan") == 1
    assert value(samples, "geekai_bot_last_sync_age_seconds") is None  # offline: no heartbeat to age
    assert value(samples, "geekai_bot_transitions_total", from_state="logged_in", to_state="starting") == 1


def test_history_counters_survive_a_restart(make_app, run_bot, emulator, auth):
    first = make_app(WECHAT_BASE_URL=emulator.base_url)
    runtime = run_bot(first)
    log_in_by_scan(first.test_client(), auth, emulator)
    runtime.shutdown(grace=3)
    again = make_app(WECHAT_BASE_URL=emulator.base_url)  # same instance folder and database
    samples = scrape(again.test_client())
    assert value(samples, "geekai_bot_login_attempts_total", result="success") == 1
    assert value(samples, "geekai_bot_transitions_total", from_state="logged_in", to_state="stopped") == 1


# -- counters from a written history (no bot) ---------------------------------------------------
def write_events(app, *events, state: str) -> None:
    """Append (old, new, actor, reason) events and set the state row."""
    from geekai.db import db
    from geekai.models import STATE_ROW_ID, BotEvent, BotState

    with app.app_context():
        for old, new, actor, reason in events:
            db.session.add(BotEvent(from_state=old, to_state=new, actor=actor, reason=reason))
        row = db.session.get(BotState, STATE_ROW_ID) or BotState(id=STATE_ROW_ID)
        row.state, row.reason = state, events[-1][3]
        db.session.add(row)
        db.session.commit()


def test_login_attempts_count_how_the_bot_ended_them_and_an_admin_cancel(app):
    """An admin's "new QR" is no failure, and a service shutdown mid-login is no cancel."""
    write_events(app,
                 ("starting", "waiting_for_scan", "bot", "scan the QR"),
                 ("waiting_for_scan", "starting", "admin (web)", "new QR requested by admin (web)"),
                 ("starting", "waiting_for_scan", "bot", "scan the QR"),
                 ("waiting_for_scan", "stopped", "system", "service shutting down"),
                 ("stopped", "starting", "system", "service started"),
                 ("starting", "waiting_for_scan", "bot", "scan the QR"),
                 ("waiting_for_scan", "retrying", "bot", "lost the connection to WeChat during login"),
                 ("retrying", "starting", "bot", "retrying"),
                 ("starting", "waiting_for_scan", "bot", "scan the QR"),
                 ("waiting_for_scan", "stopped", "api token", "stopped by api token"),
                 ("stopped", "starting", "admin (web)", "start requested by admin (web)"),
                 ("starting", "waiting_for_confirm", "bot", "scanned"),
                 ("waiting_for_confirm", "logged_in", "bot", "logged in as GeekAI"),
                 state="logged_in")
    samples = scrape(app.test_client())
    attempts = {result: value(samples, "geekai_bot_login_attempts_total", result=result)
                for result in ("success", "failure", "needs_login", "error", "cancelled")}
    assert attempts == {"success": 1, "failure": 1, "needs_login": 0, "error": 0, "cancelled": 1}
    # The transitions themselves are all counted, whoever made them.
    assert value(samples, "geekai_bot_transitions_total", from_state="waiting_for_scan", to_state="stopped") == 2


def test_incidents_and_watchdog_restarts(make_app):
    from geekai.alerts import incidents

    app = make_app(ALERT_GRACE_SECONDS=600)
    restart = ("logged_in", "retrying", "watchdog", "watchdog: no sync with WeChat for 50 s (limit 45 s)")
    back = ("starting", "logged_in", "bot", "logged in as GeekAI")
    write_events(app, back, restart, back, ("logged_in", "starting", "bot", "WeChat ended the session"), back,
                 state="logged_in")
    samples = scrape(app.test_client())
    assert value(samples, "geekai_bot_watchdog_restarts_total") == 1
    assert value(samples, "geekai_incidents_open") == 0 and value(samples, "geekai_incidents_total") == 0
    write_events(app, restart, back, restart, state="retrying")
    assert incidents.evaluate(app) == "opened flapping"
    samples = scrape(app.test_client())
    assert value(samples, "geekai_bot_watchdog_restarts_total") == 3
    assert value(samples, "geekai_incidents_open") == 1 and value(samples, "geekai_incidents_total") == 1
    write_events(app, ("retrying", "stopped", "admin (web)", "stopped by admin (web)"), state="stopped")
    assert incidents.evaluate(app) == "closed"
    samples = scrape(app.test_client())
    assert value(samples, "geekai_incidents_open") == 0 and value(samples, "geekai_incidents_total") == 1
