"""The state store loses nothing when the database is locked or broken, and never holds the bot up."""
from __future__ import annotations

import contextlib
import threading
import time

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from conftest import bot_state, wait_for, wait_for_state
from geekai.db import db
from geekai.models import BotEvent

LOCK_SECONDS = 10


@contextlib.contextmanager
def beside(app):
    """A connection of another program to the app's database (a shell, a backup), in a transaction."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN EXCLUSIVE")  # what `sqlite3` or a backup does
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


def lock_for_writers(connection) -> None:
    """Writers wait, readers go on: SQLite in WAL mode, PostgreSQL's EXCLUSIVE lock mode."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE bot_state, bot_event IN EXCLUSIVE MODE"))


def history(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(db.select(BotEvent).order_by(BotEvent.id)).scalars().all()
        return [(row.from_state, row.to_state) for row in rows]


def in_background(func):
    """Run func in a thread; the thread, to join with a timeout."""
    thread = threading.Thread(target=func, daemon=True)
    thread.start()
    return thread


def test_a_database_locked_through_scan_and_confirm_loses_no_transition(make_app, emulator, run_bot, auth):
    # BOT_LOGIN_TIMEOUT is 2 s: a login that waited on the 10 s lock would fail.
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_LOGIN_TIMEOUT=2)
    client = app.test_client()
    runtime = run_bot(app)
    supervisor = runtime.supervisor
    wait_for_state(client, auth, "waiting_for_scan")

    with beside(app) as holder:
        lock_for_writers(holder)
        locked_at = time.monotonic()
        emulator.scan()
        assert wait_for(lambda: supervisor.state == "waiting_for_confirm", timeout=5)
        emulator.confirm()
        assert wait_for(lambda: supervisor.state == "logged_in", timeout=5), supervisor.state
        # The supervisor's lock is free: the watchdog and an admin's command are not held up.
        watchdog = in_background(lambda: supervisor.check_alive(45))
        watchdog.join(2)
        assert not watchdog.is_alive(), "the watchdog waited on the database"
        assert client.get("/healthz").status_code == 200
        # WAL: readers still read, and see the state the database holds, not a made-up one.
        assert bot_state(client, auth)["state"] == "waiting_for_scan"
        assert runtime.store.pending >= 2
        time.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked_at)))

    shown = wait_for_state(client, auth, "logged_in", timeout=15)
    assert shown["account"]
    transitions = history(app)
    i = transitions.index(("starting", "waiting_for_scan"))
    assert transitions[i:] == [("starting", "waiting_for_scan"), ("waiting_for_scan", "waiting_for_confirm"),
                               ("waiting_for_confirm", "logged_in")]
    assert supervisor.state == "logged_in"


def test_a_broken_table_keeps_transitions_queued_until_it_is_back(make_app, run_bot, auth, caplog):
    app = make_app(BOT_RETRY_FIRST_SECONDS=0.2, BOT_RETRY_MAX_SECONDS=0.2)
    client = app.test_client()
    runtime = run_bot(app)
    wait_for_state(client, auth, "retrying")
    with beside(app) as other:
        other.execute(text("ALTER TABLE bot_event RENAME TO bot_event_away"))  # every write now fails
        other.commit()
    failures = runtime.supervisor.failures
    assert wait_for(lambda: runtime.supervisor.failures >= failures + 3, timeout=10), "the bot stopped retrying"
    assert "could not record bot state" in caplog.text
    assert caplog.text.count("could not record bot state") == 1, "a failing database is logged once a minute"
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/bot", headers=auth).status_code == 200
    assert runtime.store.pending >= 6  # 3 failures: retrying, starting, retrying ... all kept

    with beside(app) as other:
        other.execute(text("ALTER TABLE bot_event_away RENAME TO bot_event"))
        other.commit()
    assert wait_for(lambda: runtime.store.pending == 0 or runtime.store.flush(0.5), timeout=15)
    transitions = history(app)
    assert len(transitions) >= 2 * (failures + 3)
    # In order, each one starting where the one before ended.
    assert all(a[1] == b[0] for a, b in zip(transitions, transitions[1:])), transitions
    assert "bot state recorded again" in caplog.text


def test_a_long_account_name_is_cut_to_its_column(app):
    from conftest import record

    record(app, "starting", "logged_in", "logged in", account="名" * 500)
    with app.app_context():
        from geekai.models import BotState
        account = db.session.get(BotState, 1).account
    assert len(account) == 200 and account.endswith("…")
