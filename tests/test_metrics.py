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
