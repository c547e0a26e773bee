"""Alerts: incidents from the bot's history, one notice per channel, delivered through the outbox."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from conftest import log_in_by_scan, wait_for, wait_for_state
from receivers import FakeSMTPServer, WebhookReceiver

from geekai.alerts import incidents
from geekai.alerts.models import Incident
from geekai.db import db, utcnow
from geekai.models import STATE_ROW_ID, BotEvent, BotState

FAST_ALERTS = {
    "ALERT_GRACE_SECONDS": 0.5,
    "ALERT_CHECK_SECONDS": 0.1,
    "OUTBOX_INTERVAL_SECONDS": 0.1,
    "OUTBOX_RETRY_FIRST_SECONDS": 0.2,
    "OUTBOX_RETRY_MAX_SECONDS": 0.5,
    "OUTBOX_TIMEOUT_SECONDS": 2,
    "PUBLIC_URL": "https://bot.example.com",
}
CHANNELS = ("webhook", "wecom", "dingtalk", "feishu")


@pytest.fixture
def receiver():
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


def channel_config(receiver) -> dict:
    base = f"http://127.0.0.1:{receiver.port}"
    return {"ALERT_WEBHOOK_URL": f"{base}/webhook", "ALERT_WECOM_URL": f"{base}/wecom",
            "ALERT_DINGTALK_URL": f"{base}/dingtalk", "ALERT_FEISHU_URL": f"{base}/feishu"}


def alerts(client, auth) -> dict:
    response = client.get("/api/alerts", headers=auth)
    assert response.status_code == 200
    return response.get_json()


def accepted_keys(receiver) -> dict[str, int]:
    return {key: len(requests) for key, requests in receiver.events_by_key().items()}


def expected_keys(incident_id: int, *notices: str) -> dict[str, int]:
    return {f"incident-{incident_id}-{notice}-{channel}": 1 for notice in notices for channel in CHANNELS}


def test_logout_from_phone_alerts_once_and_recovers_once_though_the_receiver_was_down(
        make_app, run_bot, emulator, receiver, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, **FAST_ALERTS, **channel_config(receiver))
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    receiver.mode = "error"  # answers 500 at first
    emulator.logout()
    wait_for_state(client, auth, "waiting_for_scan")
    # The failed attempts are visible to the admin, with the receiver's answer.
    failing = wait_for(lambda: [d for i in alerts(client, auth)["incidents"] for d in i["deliveries"]
                                if d["attempts"] >= 1 and d["status"] == "pending"], timeout=10)
    assert failing and "HTTP 500" in failing[0]["last_error"]
    receiver.stop()  # then down altogether (connection refused)
    wait_for(lambda: any("Connection" in d["last_error"] or "refused" in d["last_error"]
                         for i in alerts(client, auth)["incidents"] for d in i["deliveries"]), timeout=10)
    receiver.mode = "ok"
    receiver.start()
    incident = alerts(client, auth)["incidents"][0]
    assert incident["open"] and incident["kind"] == "down" and incident["state"] == "waiting_for_scan"
    assert wait_for(lambda: accepted_keys(receiver) == expected_keys(incident["id"], "opened"), timeout=15), \
        accepted_keys(receiver)

    log_in_by_scan(client, auth, emulator)
    assert wait_for(lambda: accepted_keys(receiver) == expected_keys(incident["id"], "opened", "resolved"),
                    timeout=15), accepted_keys(receiver)
    # The receiver has them all; the outbox records the last delivery just after.
    shown = wait_for(lambda: (lambda a: a["deliveries"]["delivered"] == 8 and a)(alerts(client, auth)))
    assert shown and shown["open"] is None and len(shown["incidents"]) == 1

    by_path = {r["path"]: WebhookReceiver.json(r) for r in receiver.accepted()
               if r["headers"]["idempotency-key"].startswith(f"incident-{incident['id']}-opened")}
    generic = by_path["/webhook"]
    assert generic["event"] == "incident.opened" and generic["state"] == "waiting_for_scan"
    assert generic["status_page"] == "https://bot.example.com/" and "1101" in generic["reason"]
    assert by_path["/wecom"]["msgtype"] == "markdown" and "https://bot.example.com/" in by_path["/wecom"]["markdown"]["content"]
    assert by_path["/dingtalk"]["msgtype"] == "text" and "waiting_for_scan" in by_path["/dingtalk"]["text"]["content"]
    assert by_path["/feishu"]["msg_type"] == "text" and "geekai" in by_path["/feishu"]["content"]["text"]


def test_nothing_is_lost_across_a_restart(make_app, run_bot, emulator, receiver, auth):
    config = dict(WECHAT_BASE_URL=emulator.base_url, **FAST_ALERTS, **channel_config(receiver))
    first = make_app(**config)
    client = first.test_client()
    runtime = run_bot(first)
    log_in_by_scan(client, auth, emulator)
    receiver.stop()
    emulator.logout()
    assert wait_for(lambda: alerts(client, auth)["open"], timeout=10)
    runtime.shutdown(grace=3)  # the alert is still queued, undelivered

    receiver.start()
    second = make_app(**config)
    client = second.test_client()
    run_bot(second)
    incident_id = alerts(client, auth)["open"]
    assert incident_id
    assert wait_for(lambda: accepted_keys(receiver) == expected_keys(incident_id, "opened"), timeout=15)
    log_in_by_scan(client, auth, emulator)
    assert wait_for(lambda: accepted_keys(receiver) == expected_keys(incident_id, "opened", "resolved"),
                    timeout=15), accepted_keys(receiver)


def test_back_within_the_grace_time_is_no_incident(make_app, run_bot, emulator, receiver, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, **dict(FAST_ALERTS, ALERT_GRACE_SECONDS=30),
                   **channel_config(receiver))
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    emulator.logout()
    log_in_by_scan(client, auth, emulator)
    wait_for(lambda: False, timeout=1)  # several evaluation rounds
    assert alerts(client, auth)["incidents"] == [] and receiver.requests == []


def test_an_admin_logout_is_no_incident(make_app, run_bot, emulator, receiver, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, **FAST_ALERTS, **channel_config(receiver))
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    assert client.post("/api/bot/logout", headers=auth).status_code == 202
    wait_for_state(client, auth, "needs_login")
    wait_for(lambda: False, timeout=1.5)  # well past the grace time
    assert alerts(client, auth)["incidents"] == [] and receiver.requests == []


def test_needs_login_opens_at_once(make_app, run_bot, emulator, receiver, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_QR_MAX_REFRESH=0,
                   **dict(FAST_ALERTS, ALERT_GRACE_SECONDS=600), **channel_config(receiver))
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    emulator.expire_qr()
    wait_for_state(client, auth, "needs_login")
    assert wait_for(lambda: alerts(client, auth)["open"], timeout=5)
    assert alerts(client, auth)["incidents"][0]["kind"] == "needs_login"
    assert wait_for(lambda: len(receiver.accepted()) == 4, timeout=10)


# -- the rules on a written history (no bot): reminders, flapping, mail ------------------------
def write_history(app, *events, state=None):
    """Append events (old, new, actor, reason[, seconds ago]) and set the state row to the last one."""
    with app.app_context():
        for old, new, actor, reason, *ago in events:
            at = utcnow() - timedelta(seconds=ago[0]) if ago else utcnow()
            db.session.add(BotEvent(from_state=old, to_state=new, actor=actor, reason=reason, at=at))
        row = db.session.get(BotState, STATE_ROW_ID) or BotState(id=STATE_ROW_ID)
        row.state, row.reason, row.since = state or events[-1][1], events[-1][3], utcnow()
        db.session.add(row)
        db.session.commit()


def outbox_keys(app) -> list[str]:
    from geekai.outbox import OutboxMessage

    with app.app_context():
        return sorted(db.session.execute(db.select(OutboxMessage.idempotency_key)).scalars())


def test_one_alert_a_reminder_after_the_interval_and_one_recovery(make_app):
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0, ALERT_REMIND_SECONDS=0.3)
    write_history(app, ("waiting_for_confirm", "logged_in", "bot", "logged in as GeekAI"),
                  ("logged_in", "retrying", "bot", "lost the connection to WeChat"))
    assert incidents.evaluate(app) == "opened down"
    assert incidents.evaluate(app) == ""  # deduplicated
    wait_for(lambda: False, timeout=0.35)
    assert incidents.evaluate(app) == "reminded"
    assert incidents.evaluate(app) == ""
    write_history(app, ("retrying", "starting", "bot", "connecting"), ("starting", "logged_in", "bot", "back"))
    assert incidents.evaluate(app) == "closed"
    assert incidents.evaluate(app) == ""
    assert outbox_keys(app) == ["incident-1-opened-webhook", "incident-1-reminder1-webhook",
                                "incident-1-resolved-webhook"]


def test_three_watchdog_restarts_in_an_hour_are_an_incident(make_app):
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=60)
    restart = ("logged_in", "retrying", "watchdog", "watchdog: no sync with WeChat for 50 s (limit 45 s)")
    back = ("starting", "logged_in", "bot", "logged in as GeekAI")
    write_history(app, back, restart, back, restart, back)
    assert incidents.evaluate(app) == ""  # two restarts, each back at once
    write_history(app, restart, back)
    assert incidents.evaluate(app) == "opened flapping"
    assert incidents.evaluate(app) == ""  # logged in, but the restarts are too recent to call it over
    with app.app_context():
        db.session.execute(db.update(BotEvent).values(at=utcnow().replace(year=2000)))
        db.session.commit()
    assert incidents.evaluate(app) == "closed"
    assert incidents.evaluate(app) == ""  # the same restarts do not open a second incident


def test_mail_channel(make_app):
    smtp = FakeSMTPServer().start()
    try:
        app = make_app(ALERT_SMTP_URL=f"smtp://alerts:secret-pass@127.0.0.1:{smtp.port}",
                       ALERT_EMAIL_TO="ops@example.com, oncall@example.com", ALERT_GRACE_SECONDS=0)
        write_history(app, ("logged_in", "error", "bot", "wxpy is not installed"))
        assert incidents.evaluate(app) == "opened error"
        from geekai import outbox
        assert outbox.deliver_due(app) == 1
        mail = smtp.messages[0]
        assert mail["to"] == ["ops@example.com", "oncall@example.com"]
        assert b"Subject: geekai: WeChat bot has failed (incident #1)" in mail["data"]
        assert b"wxpy is not installed" in mail["data"] and smtp.logins == ["alerts"]
        client = app.test_client()
        shown = client.get("/api/alerts", headers={"Authorization": "Bearer test-token-0123456789"}).get_json()
        assert shown["channels"] == ["email"]
        assert "secret-pass" not in json.dumps(shown)
    finally:
        smtp.stop()


def test_alerts_api_needs_an_admin(client):
    assert client.get("/api/alerts").status_code == 401


def test_test_alert_and_retry_by_hand(make_app, receiver, auth):
    app = make_app(ALERT_FEISHU_URL=receiver.url, OUTBOX_MAX_ATTEMPTS=1)
    client = app.test_client()
    receiver.mode = "error"
    queued = client.post("/api/alerts/test", headers=auth)
    assert queued.status_code == 202
    from geekai import outbox
    outbox.deliver_due(app)
    message_id = queued.get_json()["deliveries"][0]["id"]
    with app.app_context():
        assert db.session.get(outbox.OutboxMessage, message_id).status == "failed"
    receiver.mode = "ok"
    assert client.post(f"/api/deliveries/{message_id}/retry", headers=auth).status_code == 202
    assert outbox.deliver_due(app) == 1
    assert "test alert" in WebhookReceiver.json(receiver.accepted()[0])["content"]["text"]
    assert client.post(f"/api/deliveries/{message_id}/retry", headers=auth).status_code == 409


@pytest.mark.parametrize("key, value", [
    ("ALERT_SMTP_URL", "http://mail.example.com"),
    ("ALERT_EMAIL_TO", "not an address"),
    ("ALERT_REMIND_SECONDS", -1),
    ("PUBLIC_URL", "bot.example.com"),
])
def test_bad_alert_config_names_the_key(make_app, key, value):
    from geekai.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        make_app(**{key: value})


def test_an_admin_stop_closes_an_open_incident_with_a_notice(make_app):
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0)
    write_history(app, ("logged_in", "starting", "bot", "WeChat ended the session"),
                  ("starting", "waiting_for_scan", "bot", "scan the QR with WeChat"))
    assert incidents.evaluate(app) == "opened down"
    write_history(app, ("waiting_for_scan", "stopped", "admin (web)", "stopped by admin (web)"))
    assert incidents.evaluate(app) == "closed"
    assert incidents.evaluate(app) == ""  # and no new one while the admin keeps it stopped
    assert outbox_keys(app) == ["incident-1-opened-webhook", "incident-1-resolved-webhook"]


def watching_for(app, seconds: float) -> None:
    """As if this process had been evaluating for `seconds` already."""
    app.extensions[incidents.WATCHING_SINCE] = utcnow() - timedelta(seconds=seconds)


def test_an_admin_stop_and_start_then_no_login_is_an_incident_after_the_grace_time(make_app):
    """The admin's start restarts the clock; a bot that then never logs in is down (it used to stay quiet)."""
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=60)
    watching_for(app, 7200)
    write_history(app, ("waiting_for_confirm", "logged_in", "bot", "logged in as GeekAI", 7000),
                  ("logged_in", "stopped", "admin (web)", "stopped by admin (web)", 6000),
                  ("stopped", "starting", "api token", "start requested by api token", 30),
                  ("starting", "retrying", "bot", "lost the connection to WeChat", 29))
    assert incidents.evaluate(app) == ""  # 30 s since the admin's start: within the grace time
    with app.app_context():
        db.session.execute(db.update(BotEvent).where(BotEvent.actor == "api token")
                           .values(at=utcnow() - timedelta(seconds=90)))
        db.session.commit()
    assert incidents.evaluate(app) == "opened down"
    with app.app_context():
        incident = db.session.execute(db.select(Incident)).scalar_one()
        assert (utcnow() - incident.began_at).total_seconds() == pytest.approx(90, abs=5)  # not the stop
        assert "start requested by api token" in incident.reason and "lost the connection" in incident.reason


def test_an_admin_stop_and_start_during_an_outage_waits_the_grace_time_again(make_app):
    """Restarting the bot by hand must not reopen an incident at once from the old departure."""
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=60)
    watching_for(app, 7200)
    write_history(app, ("waiting_for_confirm", "logged_in", "bot", "logged in as GeekAI", 7000),
                  ("logged_in", "retrying", "bot", "lost the connection to WeChat", 3600))
    assert incidents.evaluate(app) == "opened down"
    write_history(app, ("retrying", "stopped", "admin (web)", "stopped by admin (web)"))
    assert incidents.evaluate(app) == "closed"
    write_history(app, ("stopped", "starting", "admin (web)", "start requested by admin (web)"))
    assert incidents.evaluate(app) == ""  # the clock starts again at the admin's start
    assert incidents.evaluate(app) == ""
    with app.app_context():
        db.session.execute(db.update(BotEvent).where(BotEvent.reason.startswith("start requested"))
                           .values(at=utcnow() - timedelta(seconds=61)))
        db.session.commit()
    assert incidents.evaluate(app) == "opened down"
    assert outbox_keys(app) == ["incident-1-opened-webhook", "incident-1-resolved-webhook",
                                "incident-2-opened-webhook"]


def test_one_off_notices_are_not_incidents_to_the_generic_webhook(make_app, auth):
    """A forged payment or a channel test is "notice.<kind>" with no incident object (not incident 0)."""
    from geekai import outbox
    from geekai.alerts.channels import FORGED_PAYMENT
    from geekai.alerts.notices import send_one_off

    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", PUBLIC_URL="https://bot.example.com")
    client = app.test_client()
    with app.app_context():
        [forged] = send_one_off(FORGED_PAYMENT, "sender is not WeChat Pay (VerifyFlag 0)", "forged-payment-7",
                                app.config)
        db.session.commit()
        forged_id, payload = forged.id, json.loads(forged.payload)
    assert payload["event"] == "notice.forged_payment" and "incident" not in payload
    assert payload["title"] == "geekai: rejected a forged WeChat Pay notice"
    assert "VerifyFlag 0" in payload["reason"] and payload["status_page"] == "https://bot.example.com/"
    # Shown (and retried) as what it is, not as a "test".
    retried = client.post(f"/api/deliveries/{forged_id}/retry", headers=auth)
    assert retried.status_code == 202
    shown = retried.get_json()
    assert shown["idempotency_key"].startswith("forged-payment-") and shown["topic"] == "alert.webhook"

    [test] = client.post("/api/alerts/test", headers=auth).get_json()["deliveries"]
    assert test["notice"] == "test"
    with app.app_context():
        payload = json.loads(db.session.get(outbox.OutboxMessage, test["id"]).payload)
    assert payload["event"] == "notice.test" and "incident" not in payload
    assert alerts(client, auth)["incidents"] == []


def test_alerts_api_reads_all_deliveries_in_one_query(make_app, auth):
    from sqlalchemy import event

    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0)
    for _ in range(3):
        write_history(app, ("logged_in", "retrying", "bot", "lost the connection to WeChat"))
        assert incidents.evaluate(app) == "opened down"
        write_history(app, ("starting", "logged_in", "bot", "back"))
        assert incidents.evaluate(app) == "closed"
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        shown = alerts(app.test_client(), auth)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [[d["idempotency_key"] for d in i["deliveries"]] for i in shown["incidents"]] == [
        [f"incident-{n}-opened-webhook", f"incident-{n}-resolved-webhook"] for n in (3, 2, 1)]
    assert len([s for s in statements if "FROM outbox" in s and "GROUP BY" not in s]) == 1


def test_a_job_registered_twice_is_scheduled_once(app):
    """register_job ignores a second registration of an id (the scheduler would refuse a duplicate id)."""
    from geekai.jobs import jobs, register_job

    before = [job.id for job in jobs(app)]
    assert "alerts-evaluate" in before and len(set(before)) == len(before)
    register_job(app, "alerts-evaluate", lambda app: None, 99)
    register_job(app, "example", lambda app: None, 1)
    register_job(app, "example", lambda app: None, 2)
    after = jobs(app)
    assert [job.id for job in after] == before + ["example"]
    assert next(job for job in after if job.id == "alerts-evaluate").func is incidents.evaluate
    assert next(job for job in after if job.id == "example").seconds == 1


def test_no_reminders_when_alert_remind_seconds_is_0(make_app):
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0, ALERT_REMIND_SECONDS=0)
    write_history(app, ("logged_in", "retrying", "bot", "lost the connection to WeChat"))
    assert incidents.evaluate(app) == "opened down"
    with app.app_context():
        db.session.execute(db.update(Incident).values(last_notice_at=utcnow().replace(year=2000)))
        db.session.commit()
    assert incidents.evaluate(app) == ""
    assert outbox_keys(app) == ["incident-1-opened-webhook"]


def test_an_incident_closes_when_the_bot_is_disabled(make_app):
    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0)
    write_history(app, ("logged_in", "retrying", "bot", "lost the connection to WeChat"))
    assert incidents.evaluate(app) == "opened down"
    write_history(app, ("retrying", "disabled", "system", "BOT_ENABLED is false"))
    assert incidents.evaluate(app) == "closed"
    assert incidents.evaluate(app) == ""  # and none opens while it stays disabled
    with app.app_context():
        incident = db.session.execute(db.select(Incident)).scalar_one()
        assert incident.close_reason == "the bot was disabled" and incident.state == "disabled"
    assert outbox_keys(app) == ["incident-1-opened-webhook", "incident-1-resolved-webhook"]


def test_opening_and_closing_an_incident_wakes_the_live_page(make_app):
    from geekai.bot.store import change_signal

    app = make_app(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook", ALERT_GRACE_SECONDS=0)
    write_history(app, ("waiting_for_confirm", "logged_in", "bot", "logged in as GeekAI"),
                  ("logged_in", "retrying", "bot", "lost the connection to WeChat"))
    signal = change_signal(app)
    before = signal.version
    assert incidents.evaluate(app) == "opened down"
    assert signal.version == before + 1
    assert incidents.evaluate(app) == ""
    assert signal.version == before + 1  # nothing new, nobody woken
