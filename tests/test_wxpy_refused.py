"""wxpy, honestly: an account WeChat keeps kicking off the web, and a hot login that never syncs."""
from __future__ import annotations

from datetime import datetime

from conftest import log_in_by_scan, wait_for, wait_for_state


def history(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def test_kicked_right_after_login_twice_waits_for_a_person_and_points_to_ilink(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    assert emulator.kick(1102)
    wait_for_state(client, auth, "waiting_for_scan")  # once may be a fluke: a fresh QR
    first = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert "retcode 1102" in first["reason"]

    log_in_by_scan(client, auth, emulator)
    assert emulator.kick(1102)
    state = wait_for_state(client, auth, "needs_login")
    assert "refuses web logins for this account" in state["reason"]
    assert "BOT_BACKEND=ilink" in state["reason"] and "retcode 1102" in state["reason"]
    qrs = emulator.request_counts["/jslogin"]
    assert not wait_for(lambda: emulator.request_counts["/jslogin"] > qrs, timeout=1), "it showed another QR"
    # The admin's "log in" tries again, with a fresh count.
    assert client.post("/api/bot/login", headers=auth).status_code == 202
    wait_for_state(client, auth, "waiting_for_scan")


def test_a_kick_after_a_session_that_lasted_starts_the_count_over(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    runtime = run_bot(bot_app)
    runtime.supervisor.backend.kicks.window = 0.5  # "right after the login": half a second here
    log_in_by_scan(client, auth, emulator)
    wait_for(lambda: False, timeout=1.0)  # online longer than the window
    emulator.kick(1102)
    wait_for_state(client, auth, "waiting_for_scan")
    log_in_by_scan(client, auth, emulator)
    emulator.kick(1102)  # at once, but the one before came after a session that lasted
    wait_for_state(client, auth, "waiting_for_scan")
    assert "needs_login" not in [e["to"] for e in history(client, auth)]


def test_a_logout_from_the_phone_is_not_taken_for_a_refusal(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    for _ in range(3):
        log_in_by_scan(client, auth, emulator)
        emulator.logout()  # 1101, right after the login, three times: still only a fresh QR
        wait_for_state(client, auth, "waiting_for_scan", "retrying")
    # 1101 is a logout; the count is of sessions WeChat itself ended (1102 and the other retcodes).
    reasons = [e["reason"] for e in history(client, auth) if e["from"] == "logged_in"]
    assert len(reasons) == 3 and all("retcode 1101" in r for r in reasons)


def test_a_hot_login_whose_sync_keeps_failing_backs_off_with_growing_pauses(bot_app, make_app, run_bot, auth,
                                                                          emulator):
    first = run_bot(bot_app)
    log_in_by_scan(bot_app.test_client(), auth, emulator)
    assert first.shutdown(grace=3)  # the session cache is kept
    emulator.set_fault("5xx", {"synccheck"})
    qrs = emulator.request_counts["/jslogin"]
    again = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_RETRY_FIRST_SECONDS=0.2, BOT_RETRY_MAX_SECONDS=30)
    client = again.test_client()
    run_bot(again)
    retries = {}  # each retrying state seen: its since -> (attempt, the pause chosen)

    def retried_after_logins():
        state = client.get("/api/bot", headers=auth).get_json()
        if state["state"] == "retrying":
            pause = (_time(state["next_retry_at"]) - _time(state["since"])).total_seconds()
            retries[state["since"]] = (state["attempt"], pause)
        after_login = [e for e in history(client, auth) if (e["from"], e["to"]) == ("logged_in", "retrying")]
        return len(retries) >= 3 and len(after_login) >= 2

    assert wait_for(retried_after_logins, timeout=60), (retries, history(client, auth)[:6])
    # Hot logins succeeded (no QR, logged_in) but never synced: the count went on, the pause grew.
    assert emulator.request_counts["/jslogin"] == qrs
    attempts, pauses = zip(*[retries[since] for since in sorted(retries)])
    assert list(attempts) == list(range(attempts[0], attempts[0] + len(attempts))), retries
    assert list(pauses) == sorted(pauses) and pauses[0] < pauses[-1], pauses


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso[:-1])
