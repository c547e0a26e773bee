"""The bot's failures never reach the web: no network, a server that hangs, a stale state."""
from __future__ import annotations

import socket
from datetime import datetime

import pytest

from geekai.db import db
from geekai.models import BotEvent, BotState
from geekai.bot import runtime as bot_runtime

from conftest import wait_for, wait_for_state


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(50)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def events(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def test_no_network_retries_with_reason_and_web_stays_up(make_app, run_bot, auth):
    app = make_app(WECHAT_BASE_URL="http://127.0.0.1:9")
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying")
    assert "cannot reach WeChat" in state["reason"] and "Connection refused" in state["reason"]
    assert state["next_retry_at"] is not None and state["attempt"] >= 1
    assert "Traceback" in state["detail"]
    assert client.get("/healthz").status_code == 200
    # Retried later, by itself, with a growing attempt count.
    retried = wait_for(lambda: [e for e in events(client, auth) if e["to"] == "retrying"][2:], timeout=10)
    assert retried, "the bot did not retry"
    attempts = [e for e in events(client, auth) if e["to"] == "starting"]
    assert len(attempts) >= 3


def test_hanging_server_attempt_ends_at_login_timeout(make_app, run_bot, auth, silent_server):
    app = make_app(WECHAT_BASE_URL=silent_server, BOT_LOGIN_TIMEOUT=1, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying", timeout=10)
    assert "did not answer within 1 s" in state["reason"]
    history = events(client, auth)
    started = next(e for e in history if e["to"] == "starting" and e["from"] == "stopped")
    failed = next(e for e in history if e["to"] == "retrying")
    elapsed = (datetime.fromisoformat(failed["at"][:-1]) - datetime.fromisoformat(started["at"][:-1])).total_seconds()
    assert 0.9 <= elapsed < 5, elapsed
    assert client.get("/healthz").status_code == 200


def test_stop_during_backoff_records_stopped_and_cancels_retry(make_app, run_bot, auth):
    app = make_app(BOT_RETRY_FIRST_SECONDS=0.5, BOT_RETRY_MAX_SECONDS=0.5)
    client = app.test_client()
    runtime = run_bot(app)
    wait_for_state(client, auth, "retrying")
    assert client.post("/api/bot/stop", headers=auth).status_code == 202
    assert client.get("/api/bot", headers=auth).get_json()["state"] == "stopped"
    before = len(events(client, auth))
    assert not wait_for(lambda: len(events(client, auth)) > before, timeout=1.5)
    assert [job.id for job in runtime.scheduler.get_jobs() if job.id.startswith("bot-attempt")] == []


def test_start_replaces_a_stale_logged_in_state(app, auth):
    with app.app_context():
        db.session.add(BotState(id=1, state="logged_in", reason="from a previous process", account="old"))
        db.session.commit()
    runtime = bot_runtime.install(app)
    runtime.take_part()
    state = app.test_client().get("/api/bot", headers=auth).get_json()
    assert state["state"] == "stopped" and state["account"] is None
    with app.app_context():
        last = db.session.execute(db.select(BotEvent).order_by(BotEvent.id.desc())).scalars().first()
        assert (last.from_state, last.to_state) == ("logged_in", "stopped")


def test_disabled_bot_is_shown_and_not_started(make_app, run_bot, auth):
    app = make_app(BOT_ENABLED=False)
    run_bot(app)
    client = app.test_client()
    assert client.get("/api/bot", headers=auth).get_json()["state"] == "disabled"
    assert client.post("/api/bot/login", headers=auth).status_code == 409


@pytest.mark.sqlite_only
def test_database_is_in_wal_mode(app):
    with app.app_context():
        assert db.session.execute(db.text("PRAGMA journal_mode")).scalar() == "wal"



def test_a_transition_missing_from_the_table_is_logged_as_an_error(make_app, run_bot, caplog):
    """What the autouse check in conftest.py reads: the supervisor names any transition outside
    geekai/bot/states.py (here forced: a disabled bot is never started by the service itself)."""
    from geekai import states

    app = make_app(BOT_ENABLED=False)
    supervisor = run_bot(app).supervisor
    assert supervisor.state == states.DISABLED and not states.is_allowed(states.DISABLED, states.STARTING)
    supervisor._go(states.STARTING, "forced by a test")
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("unexpected bot transition")] == ["ERROR"]
    caplog.clear()  # seen: not a failure of this test
