"""The real wxpy through the app against the fake web-WeChat server: login, messages, logout."""
from __future__ import annotations

import os

import pytest

from geekai.jobs import register_message_handler

from conftest import log_in_by_scan, wait_for, wait_for_state


def history(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def test_qr_scan_confirm_logs_in_with_account_name(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    state = wait_for_state(client, auth, "waiting_for_scan")
    assert state["qr_expires_at"] is not None
    qr = client.get("/api/bot/qr.png", headers=auth)
    assert qr.mimetype == "image/png" and qr.headers["Cache-Control"] == "no-store"
    emulator.scan()
    wait_for_state(client, auth, "waiting_for_confirm")
    assert client.get("/api/bot/qr.png", headers=auth).status_code == 404
    emulator.confirm()
    state = wait_for_state(client, auth, "logged_in")
    assert state["account"] == emulator.nickname == "GeekAI测试号"
    assert state["reason"] == "logged in as GeekAI测试号"
    transitions = [(e["from"], e["to"]) for e in reversed(history(client, auth))]
    assert transitions[-4:] == [("stopped", "starting"), ("starting", "waiting_for_scan"),
                                ("waiting_for_scan", "waiting_for_confirm"), ("waiting_for_confirm", "logged_in")]
    cache = os.path.join(bot_app.instance_path, "wxpy-session.pkl")
    assert os.stat(cache).st_mode & 0o777 == 0o600 and os.path.getsize(cache) > 0


def test_qr_expiry_refreshes_then_cap_needs_login(make_app, run_bot, auth, emulator):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_QR_MAX_REFRESH=3)
    client = app.test_client()
    run_bot(app)
    shown = ["scan the QR with WeChat", "QR expired; new QR (refresh 1)", "QR expired; new QR (refresh 2)"]
    for reason in shown:
        assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["reason"] == reason), reason
        assert emulator.expire_qr()
    state = wait_for_state(client, auth, "needs_login")
    assert state["reason"] == "the login QR expired 3 times with nobody scanning it"
    reasons = [e["reason"] for e in history(client, auth) if e["to"] == "waiting_for_scan"]
    assert reasons == list(reversed(shown))  # no fourth QR
    # A person asks for a new QR: the count starts over.
    assert client.post("/api/bot/login", headers=auth).status_code == 202
    wait_for_state(client, auth, "waiting_for_scan")


def test_one_to_one_text_reaches_handler_and_reply_is_sent(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    runtime = run_bot(bot_app)
    received = []

    def echo(message):
        received.append(message)
        message.reply(f"echo: {message.text}")

    runtime.supervisor.handlers.append(echo)
    log_in_by_scan(client, auth, emulator)
    emulator.send_text("1 < 2 & 3 > 2", from_user="张三")
    assert wait_for(lambda: received, timeout=5), "the 1:1 text was lost"
    assert received[0].text == "1 < 2 & 3 > 2" and received[0].type == "Text"
    assert received[0].sender_name == "张三"
    assert wait_for(lambda: emulator.sent, timeout=5)
    assert emulator.sent[0]["Msg"]["Content"] == "echo: 1 < 2 & 3 > 2"


def test_failing_handler_does_not_stop_delivery(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    runtime = run_bot(bot_app)
    received = []
    runtime.supervisor.handlers[:] = [lambda m: 1 / 0, received.append]
    log_in_by_scan(client, auth, emulator)
    for n in range(3):
        emulator.send_text(f"message {n}")
    assert wait_for(lambda: len(received) == 3, timeout=5)
    assert [m.text for m in received] == ["message 0", "message 1", "message 2"]


def test_logout_from_phone_is_recorded_then_fresh_qr(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    emulator.logout()
    wait_for_state(client, auth, "waiting_for_scan", timeout=10)
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert "retcode 1101" in left["reason"]
    assert client.get("/healthz").status_code == 200


def test_restart_with_valid_cache_logs_in_without_scan(bot_app, make_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    first = run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    assert first.shutdown(grace=3)
    assert client.get("/api/bot", headers=auth).get_json()["state"] == "stopped"
    qr_fetches = emulator.request_counts["/jslogin"]

    again = make_app(WECHAT_BASE_URL=emulator.base_url)
    run_bot(again)
    state = wait_for_state(again.test_client(), auth, "logged_in")
    assert state["account"] == "GeekAI测试号"
    assert emulator.request_counts["/jslogin"] == qr_fetches, "a QR was fetched for a hot login"
    kinds = [e["to"] for e in history(again.test_client(), auth)]
    assert "waiting_for_scan" not in kinds[: kinds.index("logged_in")]


def test_messages_during_downtime_arrive_after_hot_login(bot_app, make_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    first = run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    first.shutdown(grace=3)
    emulator.send_text("sent while the service was down")
    again = make_app(WECHAT_BASE_URL=emulator.base_url)
    received = []
    register_message_handler(again, received.append)
    run_bot(again)
    assert wait_for(lambda: received, timeout=5), "a message fetched by the hot login was dropped"
    assert received[0].text == "sent while the service was down"


def test_rejected_cache_falls_back_to_qr(bot_app, make_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    first = run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    first.shutdown(grace=3)
    emulator.logout()  # the cached session is now dead at the server
    again = make_app(WECHAT_BASE_URL=emulator.base_url)
    run_bot(again)
    wait_for_state(again.test_client(), auth, "waiting_for_scan")


@pytest.mark.parametrize("garbage", [b"", b"\x80\x03garbage-not-a-pickle", b"cos\nsystem\n(S'true'\ntR."])
def test_unreadable_cache_falls_back_to_qr(bot_app, run_bot, auth, emulator, garbage):
    cache = os.path.join(bot_app.instance_path, "wxpy-session.pkl")
    with open(cache, "wb") as handle:
        handle.write(garbage)
    os.chmod(cache, 0o600)
    run_bot(bot_app)
    wait_for_state(bot_app.test_client(), auth, "waiting_for_scan")


def test_cache_writable_by_others_is_not_loaded(bot_app, run_bot, auth, emulator, tmp_path):
    cache = os.path.join(bot_app.instance_path, "wxpy-session.pkl")
    marker = tmp_path / "pwned"
    with open(cache, "wb") as handle:
        handle.write(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    os.chmod(cache, 0o666)
    run_bot(bot_app)
    wait_for_state(bot_app.test_client(), auth, "waiting_for_scan")
    assert not marker.exists()
    assert os.stat(cache).st_mode & 0o777 == 0o600


def test_admin_logout_forgets_session_and_waits(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    response = client.post("/api/bot/logout", headers=auth)
    assert response.status_code == 202 and response.get_json()["state"] == "needs_login"
    assert not os.path.exists(os.path.join(bot_app.instance_path, "wxpy-session.pkl"))
    assert wait_for(lambda: emulator.session is None or not emulator.session.valid)
    last = history(client, auth)[0]
    assert (last["to"], last["actor"]) == ("needs_login", "api token")


def test_login_while_logged_in_is_refused(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    assert client.post("/api/bot/login", headers=auth).status_code == 409


def test_stop_while_waiting_for_scan_ends_the_attempt(bot_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    runtime = run_bot(bot_app)
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.post("/api/bot/stop", headers=auth).get_json()["state"] == "stopped"
    assert runtime.supervisor.join(timeout=2), "the login attempt kept running after stop"
    polls = emulator.request_counts["/cgi-bin/mmwebwx-bin/login"]
    assert not wait_for(lambda: emulator.request_counts["/cgi-bin/mmwebwx-bin/login"] > polls + 1, timeout=1)
    assert client.post("/api/bot/start", headers=auth).status_code == 202
    wait_for_state(client, auth, "waiting_for_scan")


def test_push_login_confirmed_on_phone(make_app, run_bot, auth):
    from geekai.bot.emulator import WeChatEmulator

    with WeChatEmulator(login_poll_hold=0.2, synccheck_hold=0.2, push_login=True).start() as emu:
        app = make_app(WECHAT_BASE_URL=emu.base_url)
        client = app.test_client()
        first = run_bot(app)
        log_in_by_scan(client, {"Authorization": "Bearer test-token-0123456789"}, emu)
        first.shutdown(grace=3)
        emu.logout()
        again = make_app(WECHAT_BASE_URL=emu.base_url)
        run_bot(again)
        state = wait_for_state(again.test_client(), auth, "waiting_for_confirm")
        assert "phone" in state["reason"]
        emu.expire_qr()  # nobody confirmed the push: a QR must follow, not another push
        wait_for_state(again.test_client(), auth, "waiting_for_scan")


def test_logout_seen_only_in_webwxsync_is_recorded(bot_app, run_bot, auth, emulator, monkeypatch):
    """A server that ends the session in webwxsync but keeps synccheck at 0 must not loop for ever."""
    from geekai.bot import emulator as emulator_module

    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    monkeypatch.setattr(emulator, "_synccheck",
                        lambda q: (200, emulator_module.JS, 'window.synccheck={retcode:"0",selector:"2"}', []))
    polls = emulator.request_counts["/cgi-bin/mmwebwx-bin/synccheck"]
    # Once the long-poll in flight has ended, every synccheck is the patched one.
    assert wait_for(lambda: emulator.request_counts["/cgi-bin/mmwebwx-bin/synccheck"] > polls + 2)
    with emulator._cond:
        emulator._end_session(emulator.session, "test")
    wait_for_state(client, auth, "waiting_for_scan", timeout=15)
    left = next(e for e in history(client, auth) if e["from"] == "logged_in")
    assert "webwxsync Ret 1101" in left["reason"]


def test_unusable_push_login_answer_falls_back_to_qr(bot_app, make_app, run_bot, auth, emulator):
    client = bot_app.test_client()
    first = run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    first.shutdown(grace=3)
    emulator.logout()
    emulator.set_fault("5xx", {"webwxpushloginurl"})
    again = make_app(WECHAT_BASE_URL=emulator.base_url)
    run_bot(again)
    wait_for_state(again.test_client(), auth, "waiting_for_scan")
    assert emulator.request_counts["/cgi-bin/mmwebwx-bin/webwxpushloginurl"] >= 1


def test_cached_session_on_a_vanished_server_gives_way_to_a_qr(make_app, run_bot, auth):
    from geekai.bot.emulator import WeChatEmulator

    with WeChatEmulator(login_poll_hold=0.2, synccheck_hold=0.2).start() as old:
        app = make_app(WECHAT_BASE_URL=old.base_url)
        first = run_bot(app)
        log_in_by_scan(app.test_client(), auth, old)
        first.shutdown(grace=3)
    with WeChatEmulator(login_poll_hold=0.2, synccheck_hold=0.2).start() as new:
        again = make_app(WECHAT_BASE_URL=new.base_url, BOT_RETRY_FIRST_SECONDS=0.2)
        run_bot(again)
        wait_for_state(again.test_client(), auth, "waiting_for_scan", timeout=15)
        reasons = [e["reason"] for e in history(again.test_client(), auth) if e["to"] == "retrying"]
        assert reasons and all("lost the connection" in r or "cannot reach" in r for r in reasons)


def test_malformed_message_is_passed_on_raw_and_loses_no_other(bot_app, run_bot, auth, emulator):
    """itchat reads a sync batch at once: one unreadable message must not take the others with it."""
    client = bot_app.test_client()
    received = []
    register_message_handler(bot_app, received.append)
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    with emulator._cond:  # both in the same webwxsync answer
        emulator.inject_message({"MsgType": 1, "Content": None, "MsgId": "1111"})
        emulator.send_text("after the broken one")
    assert wait_for(lambda: len(received) == 2, timeout=5), [m.type for m in received]
    broken, good = received
    assert (broken.type, broken.id) == ("Unreadable", "1111")
    assert broken.raw["MsgType"] == 1
    assert broken.sender_contact["NickName"] == "张三"  # looked up, for checks such as the payment sender's
    assert (good.type, good.text) == ("Text", "after the broken one")
    emulator.send_text("and the listener is still alive")
    assert wait_for(lambda: len(received) == 3, timeout=5)


def test_qr_scanned_then_cancelled_does_not_count_towards_the_cap(make_app, run_bot, auth, emulator):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_QR_MAX_REFRESH=1)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    emulator.scan()
    wait_for_state(client, auth, "waiting_for_confirm")
    assert emulator.cancel()  # cancelled on the phone: a new QR, still no cap reached
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["reason"]
                    == "QR expired; new QR (refresh 1)")
    assert emulator.expire_qr()  # this one nobody scanned: the cap of one is reached
    state = wait_for_state(client, auth, "needs_login")
    assert state["reason"] == "the login QR expired once with nobody scanning it"


def _dotted_global_pickle(command: str) -> bytes:
    """Protocol 4: ("itchat.utils", "os.system") as one STACK_GLOBAL, called with `command`.

    The module is itchat's own; the dotted name walks from it to os.system (itchat.utils imports os).
    """
    def text(value: str) -> bytes:
        data = value.encode()
        return b"\x8c" + bytes([len(data)]) + data
    return b"\x80\x04" + text("itchat.utils") + text("os.system") + b"\x93" + text(command) + b"\x85R."


def test_the_malicious_pickle_would_run_code_under_plain_pickle(tmp_path):
    import pickle

    marker = tmp_path / "ran"
    pickle.loads(_dotted_global_pickle(f"touch {marker}"))  # what itchat's own pickle.load would do
    assert marker.exists()


def test_a_private_cache_naming_a_dotted_global_runs_nothing_and_a_qr_follows_with_the_reason(
        bot_app, run_bot, auth, emulator, tmp_path):
    cache = os.path.join(bot_app.instance_path, "wxpy-session.pkl")
    marker = tmp_path / "pwned"
    with open(cache, "wb") as handle:
        handle.write(_dotted_global_pickle(f"touch {marker}"))
    os.chmod(cache, 0o600)  # private: only the unpickler stands between it and os.system
    run_bot(bot_app)
    state = wait_for_state(bot_app.test_client(), auth, "waiting_for_scan")
    assert not marker.exists()
    assert "saved session" in state["reason"] and "itchat.utils.os.system is not allowed" in state["reason"]
    aside = [name for name in os.listdir(bot_app.instance_path) if name.startswith("wxpy-session.pkl.unreadable-")]
    assert len(aside) == 1 and os.stat(os.path.join(bot_app.instance_path, aside[0])).st_mode & 0o777 == 0o600


def test_itchat_and_wxpy_load_their_pickles_through_the_restricted_unpickler(tmp_path):
    from types import SimpleNamespace

    from geekai.bot.wxpy_patches import import_wxpy, install_patches

    itchat, wxpy = import_wxpy()
    install_patches(itchat, wxpy)
    from itchat.components import hotreload
    from wxpy.utils.puid_map import PuidMap

    marker = tmp_path / "pwned"
    path = tmp_path / "cache.pkl"
    path.write_bytes(_dotted_global_pickle(f"touch {marker}"))
    answer = hotreload.load_login_status(SimpleNamespace(), str(path))  # itchat's hot reload, direct
    assert answer["BaseResponse"]["Ret"] == -1002 and not marker.exists()
    with pytest.raises(Exception, match="not allowed"):
        PuidMap(str(path))  # wxpy's puid map loads its file on creation
    assert not marker.exists()
    # A real puid map (wxpy's own classes) still loads.
    good = PuidMap(str(tmp_path / "puid.pkl"))
    good.user_names["@a"] = "puid1"
    good.dump()
    assert PuidMap(str(tmp_path / "puid.pkl")).user_names["@a"] == "puid1"
