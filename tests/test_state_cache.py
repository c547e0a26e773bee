"""The bot state is served from the copy the state store keeps at each write: no query per request,
yet never stale, in the process that writes and in one that follows another's writes."""
from __future__ import annotations

import contextlib

from sqlalchemy import event, update

from conftest import bot_state, wait_for
from geekai.bot import runtime as bot_runtime
from geekai.bot.state_cache import state_cache
from geekai.db import db, utcnow
from geekai.models import STATE_ROW_ID, BotState
from geekai.web.reasons import annotate
from geekai.web.stream import messages

LEASE = {"BOT_LEASE_SECONDS": 1}


@contextlib.contextmanager
def statements(app):
    """The SQL statements the app's engine runs inside the block, from any thread."""
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def bot_state_queries(app, client, auth) -> list[str]:
    with statements(app) as seen:
        assert client.get("/api/bot", headers=auth).status_code == 200
    return [s for s in seen if "bot_state" in s]


def test_the_state_api_answers_from_the_cache_with_the_latest_write(make_app, auth, run_bot):
    app = make_app(BOT_ENABLED=False)
    client = app.test_client()
    runtime = run_bot(app)
    assert bot_state(client, auth)["state"] == "disabled"
    assert bot_state_queries(app, client, auth) == []
    runtime.store.transition("disabled", "stopped", "a change", actor="test")
    assert runtime.store.flush(5)
    assert bot_state(client, auth)["state"] == "stopped", "the write updates the cache"
    assert bot_state(client, auth)["reason"] == "a change"
    assert bot_state_queries(app, client, auth) == []
    with app.app_context():
        row = db.session.get(BotState, STATE_ROW_ID)
        assert annotate(row.to_dict()) == bot_state(client, auth), "the cache holds exactly the row"


def test_the_qr_comes_from_the_cache_and_goes_with_the_state(make_app, auth, run_bot):
    app = make_app(BOT_ENABLED=False)
    client = app.test_client()
    runtime = run_bot(app)
    png = b"\x89PNG\r\n\x1a\n-a-login-qr"
    runtime.store.transition("disabled", "waiting_for_scan", "scan", qr_png=png)
    assert runtime.store.flush(5)
    with statements(app) as seen:
        answer = client.get("/api/bot/qr.png", headers=auth)
    assert answer.status_code == 200 and answer.data == png
    assert answer.headers["Cache-Control"] == "no-store"
    assert not [s for s in seen if "bot_state" in s]
    assert "a-login-qr" not in client.get("/api/bot", headers=auth).get_data(as_text=True)
    runtime.store.transition("waiting_for_scan", "logged_in", "scanned", account="Alice")
    assert runtime.store.flush(5)
    assert client.get("/api/bot/qr.png", headers=auth).status_code == 404


def test_the_live_stream_snapshot_comes_from_the_cache(make_app, auth, run_bot):
    app = make_app(BOT_ENABLED=False)
    runtime = run_bot(app)
    runtime.store.transition("disabled", "stopped", "for the stream")
    assert runtime.store.flush(5)
    with statements(app) as seen:
        stream = messages(app, None, lambda: False)
        next(stream)
        snapshot = next(stream)
    assert '"reason": "for the stream"' in snapshot
    assert not [s for s in seen if "FROM bot_state" in s]


def test_without_a_bot_runtime_every_read_goes_to_the_database(make_app, auth):
    app = make_app()
    client = app.test_client()
    assert bot_state(client, auth)["state"] == "stopped"   # no row yet
    with app.app_context():
        db.session.add(BotState(id=STATE_ROW_ID, state="logged_in", reason="written elsewhere", account="Bob"))
        db.session.commit()
    assert bot_state(client, auth)["account"] == "Bob"
    assert bot_state_queries(app, client, auth), "nothing keeps the cache current here"


def test_a_follower_reloads_the_cache_when_the_leader_writes(make_app, auth, run_bot):
    leader_app, follower_app = make_app(BOT_ENABLED=False, **LEASE), make_app(BOT_ENABLED=False, **LEASE)
    leader, follower = run_bot(leader_app), run_bot(follower_app)
    assert leader.leading and not follower.leading
    client = follower_app.test_client()
    assert bot_state(client, auth)["state"] == "disabled"
    leader.store.transition("disabled", "stopped", "the leader wrote this")
    assert leader.store.flush(5)
    assert wait_for(lambda: bot_state(client, auth)["reason"] == "the leader wrote this", timeout=10)
    assert bot_state_queries(follower_app, client, auth) == [], "between changes the follower reads no row"


def test_a_follower_that_cannot_read_keeps_the_last_state_and_tries_again(make_app, auth, run_bot):
    leader_app, follower_app = make_app(BOT_ENABLED=False, **LEASE), make_app(BOT_ENABLED=False, **LEASE)
    leader, follower = run_bot(leader_app), run_bot(follower_app)
    client = follower_app.test_client()
    assert bot_state(client, auth)["state"] == "disabled"
    cache = state_cache(follower_app)
    broken = {"on": True}
    load = cache.load

    def failing_load():
        if broken["on"]:
            raise RuntimeError("database away")
        return load()
    cache.load = failing_load
    with leader_app.app_context():
        db.session.execute(update(BotState).where(BotState.id == STATE_ROW_ID)
                           .values(reason="changed while unreadable", updated_at=utcnow()))
        db.session.commit()
    bot_runtime.get(follower_app)._watch_changes()
    assert bot_state(client, auth)["state"] == "disabled", "the last good reading is still served"
    broken["on"] = False
    follower._watch_changes()
    assert bot_state(client, auth)["reason"] == "changed while unreadable"
