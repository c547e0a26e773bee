"""One bot per deployment: the lease, the commands other processes hand over, takeover and fencing.

These run several apps in one process on one database (each app is what one worker would be);
tests/test_lease_processes.py does the same with real processes.
"""
from __future__ import annotations

import socket
from datetime import timedelta

from sqlalchemy import update

from conftest import bot_state, wait_for, wait_for_state
from geekai.bot import runtime as bot_runtime
from geekai.bot.lease import LEASE_ROW_ID, Lease
from geekai.bot.store import change_signal
from geekai.db import db, utcnow
from geekai.models import BotEvent, BotLease

LEASE = {"BOT_LEASE_SECONDS": 1}


def start(app):
    runtime = bot_runtime.install(app)
    runtime.take_part()
    runtime.start()
    return runtime


def events(app) -> list[BotEvent]:
    with app.app_context():
        return db.session.execute(db.select(BotEvent).order_by(BotEvent.id)).scalars().all()


def lease_row(app) -> BotLease:
    with app.app_context():
        row = db.session.get(BotLease, LEASE_ROW_ID)
        db.session.expunge(row)
        return row


def set_lease(app, **values) -> None:
    with app.app_context():
        db.session.execute(update(BotLease).where(BotLease.id == LEASE_ROW_ID).values(**values))
        db.session.commit()


def test_the_first_process_runs_the_bot_and_the_second_stands_by(make_app, auth, run_bot):
    leader_app, follower_app = make_app(**LEASE), make_app(**LEASE)
    leader, follower = run_bot(leader_app), run_bot(follower_app)
    assert leader.leading and not follower.leading
    assert follower.supervisor.backend is None, "a follower makes no backend (a demo emulator, a login)"
    wait_for_state(follower_app.test_client(), auth, "retrying")  # the leader's state, read by the follower
    assert lease_row(leader_app).owner == leader.lease.owner
    # Nothing the follower does writes the bot's state.
    assert not wait_for(lambda: follower.leading, timeout=1.5)


def test_a_command_given_to_another_process_is_run_by_the_bots(make_app, auth, run_bot):
    leader_app, follower_app = make_app(**LEASE), make_app(**LEASE)
    leader, _ = run_bot(leader_app), run_bot(follower_app)
    client = follower_app.test_client()
    wait_for_state(client, auth, "retrying")
    answer = client.post("/api/bot/stop", headers=auth)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["state"] == "stopped"
    assert leader.supervisor.state == "stopped"
    last = events(leader_app)[-1]
    assert (last.to_state, last.actor) == ("stopped", "api token")
    assert client.post("/api/bot/start", headers=auth).status_code == 202
    assert wait_for(lambda: leader.supervisor.state in ("starting", "retrying"))


def test_a_follower_s_live_page_wakes_on_the_leader_s_changes(make_app, auth, run_bot):
    leader_app, follower_app = make_app(**LEASE), make_app(**LEASE)
    leader, _ = run_bot(leader_app), run_bot(follower_app)
    signal = change_signal(follower_app)
    seen = signal.version
    leader.command("stop", "admin (web)")
    assert wait_for(lambda: signal.version != seen, timeout=5)


def test_a_clean_stop_hands_the_bot_over_at_once_and_the_history_says_so(make_app, auth, run_bot):
    leader_app, follower_app = make_app(BOT_LEASE_SECONDS=30), make_app(BOT_LEASE_SECONDS=30)
    leader, follower = start(leader_app), run_bot(follower_app)
    assert leader.leading
    leader.shutdown(grace=3)
    assert lease_row(leader_app).released
    assert wait_for(lambda: follower.leading, timeout=15), "the follower waited for the lease to expire"
    client = follower_app.test_client()
    wait_for_state(client, auth, "starting", "retrying")
    handover = [e for e in events(follower_app) if e.actor == "lease"]
    assert handover and "runs the bot now (lease epoch 2)" in handover[-1].reason
    assert handover[-1].reason.endswith("stopped")


def test_an_expired_lease_is_taken_over_and_the_old_holder_writes_nothing_more(make_app, auth, run_bot):
    old_app, new_app = make_app(**LEASE), make_app(**LEASE)
    old = run_bot(old_app)
    wait_for_state(old_app.test_client(), auth, "retrying")
    # As if the old holder froze (SIGSTOP, a long GC, a lost network) past its lease: its renewal
    # stops, the lease expires, and another process takes it over with the next epoch.
    old.scheduler.pause_job("bot-lease")
    set_lease(old_app, expires_at=utcnow() - timedelta(seconds=1))
    new = run_bot(new_app)
    assert new.leading and lease_row(new_app).epoch == 2
    takeover = [e for e in events(new_app) if e.actor == "lease"][-1]
    assert "expired" in takeover.reason
    count = len(events(new_app))

    # The old holder wakes: its next writes are refused in their own transaction, it learns it
    # lost the lease and stops its bot, recording nothing.
    old.supervisor.stop(actor="admin (web)", reason="a late command")
    old.scheduler.resume_job("bot-lease")
    assert wait_for(lambda: not old.leading, timeout=5)
    assert old.store.fenced
    written = events(new_app)[count:]
    assert all(e.reason != "a late command" for e in written), [e.reason for e in written]
    assert bot_state(new_app.test_client(), auth)["state"] in ("starting", "retrying", "stopped",
                                                                 "waiting_for_scan")
    assert lease_row(new_app).owner == new.lease.owner


def test_a_live_holder_on_another_host_keeps_the_lease_until_it_expires(app):
    other = Lease(app, 30, owner="elsewhere:4242:abcd")
    assert other.try_acquire() is not None
    mine = Lease(app, 30)
    assert mine.try_acquire() is None
    set_lease(app, expires_at=utcnow() - timedelta(seconds=1))
    taken = mine.try_acquire()
    assert taken is not None and taken.ended == "expired" and taken.epoch == 2
    assert other.renew() is False


def test_a_dead_process_of_this_host_does_not_hold_the_lease(app):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Lease(app, 30, owner=f"{socket.gethostname()}:{int(gone.stdout)}:dead")
    assert dead.try_acquire() is not None
    taken = Lease(app, 30).try_acquire()
    assert taken is not None and taken.ended == "gone", "a restart should not wait for the old lease"


def test_a_command_nobody_runs_is_answered_and_dropped(make_app, auth, run_bot):
    from geekai.bot import commands

    app = make_app(**LEASE)
    other = Lease(app, 30, owner="elsewhere:4242:abcd")
    assert other.try_acquire() is not None  # a holder that never takes commands
    runtime = run_bot(app)
    assert not runtime.leading
    answer = app.test_client().post("/api/bot/stop", headers=auth)
    assert answer.status_code == 202 and answer.get_json()["queued"] is True
    with app.app_context():
        db.session.execute(update(commands.BotCommand).values(created_at=utcnow() - timedelta(minutes=5)))
        db.session.commit()
    fake_supervisor = None  # never called: the stale command is dropped
    assert commands.run_queued(app, fake_supervisor) == 0
    with app.app_context():
        row = db.session.execute(db.select(commands.BotCommand)).scalars().one()
        assert commands.Outcome.from_json(row.result).status == 410
