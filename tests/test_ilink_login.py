"""The iLink backend logging in through the app against the fake iLink server: QR, scan, confirm,
verification codes, expiry and the cap, redirects, the saved token, and faults at each step."""
from __future__ import annotations

import io
import json
import os

import png
import pytest

from conftest import decode_qr, ilink_log_in, wait_for, wait_for_state
from geekai.cli import qr_modules


def history(client, auth):
    return client.get("/api/bot/events?limit=200", headers=auth).get_json()["events"]


def token_file(app) -> str:
    return os.path.join(app.instance_path, "ilink-token.json")


def test_scan_and_confirm_log_in_with_the_bot_id_and_keep_the_token_private(ilink_app, run_bot, auth, ilink, caplog):
    client = ilink_app.test_client()
    run_bot(ilink_app)
    state = wait_for_state(client, auth, "waiting_for_scan")
    assert state["qr_expires_at"] is not None and state["verify_code_required"] is False
    qr = client.get("/api/bot/qr.png", headers=auth)
    assert qr.mimetype == "image/png" and qr.headers["Cache-Control"] == "no-store"
    # A real QR of exactly the text iLink sent, drawn like web WeChat's (10 px a module, 4 modules quiet).
    assert decode_qr(qr.data) == ilink.qrcode_content
    width, height, _, _ = png.Reader(file=io.BytesIO(qr.data)).read()
    modules = len(qr_modules(qr.data))
    assert width == height == (modules + 8) * 10, "not 10 px a module with a 4-module quiet zone, as itchat's"
    ilink.scan()
    assert wait_for_state(client, auth, "waiting_for_confirm")["reason"] == "confirm the login on your phone"
    assert client.get("/api/bot/qr.png", headers=auth).status_code == 404
    ilink.confirm()
    state = wait_for_state(client, auth, "logged_in")
    assert state["account"] == ilink.bot_id and state["reason"] == f"logged in as {ilink.bot_id}"
    assert os.stat(token_file(ilink_app)).st_mode & 0o777 == 0o600
    with open(token_file(ilink_app)) as handle:
        saved = json.load(handle)
    assert saved["bot_token"] == ilink.token and saved["ilink_bot_id"] == ilink.bot_id
    assert wait_for(lambda: ilink.notices == ["notifystart"])
    assert ilink.token not in caplog.text and ilink.token not in json.dumps(history(client, auth))
    assert ilink.protocol_errors == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_server_that_takes_only_one_method_for_the_qr_still_gives_one(make_app, run_bot, auth, method):
    from geekai.bot.ilink_emulator import IlinkEmulator

    with IlinkEmulator(qr_poll_hold=0.2, updates_hold=0.3, qrcode_method=method).start() as emu:
        app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=emu.base_url)
        client = app.test_client()
        run_bot(app)
        ilink_log_in(client, auth, emu)
        assert [m for m, path, _ in emu.requests if path.endswith("get_bot_qrcode")][-1] == method
        assert emu.protocol_errors == []


def test_verification_code_right_logs_in(ilink_app, run_bot, auth, ilink):
    client = ilink_app.test_client()
    run_bot(ilink_app)
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.scan(code=True)
    state = wait_for_state(client, auth, "waiting_for_confirm")
    assert state["verify_code_required"] is True and state["verify_code"] == "required"
    assert state["reason"] == "enter the number shown on the phone"
    answer = client.post("/api/bot/verify", json={"code": ilink.shown_code}, headers=auth)
    assert answer.status_code == 202 and answer.get_json()["verify_code"] == "checking"
    assert answer.get_json()["verify_code_required"] is False
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code"] is None)
    ilink.confirm()
    wait_for_state(client, auth, "logged_in")
    reasons = [e["reason"] for e in history(client, auth)]
    assert "verification code entered by api token; checking it" in reasons


def test_a_wrong_code_is_said_and_another_may_be_entered(ilink_app, run_bot, auth, ilink):
    client = ilink_app.test_client()
    run_bot(ilink_app)
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.scan(code=True)
    wait_for_state(client, auth, "waiting_for_confirm")
    wrong = "0000" if ilink.shown_code != "0000" else "1111"
    assert client.post("/api/bot/verify", json={"code": wrong}, headers=auth).status_code == 202
    state = wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code"] == "wrong"
                     and client.get("/api/bot", headers=auth).get_json())
    assert state, client.get("/api/bot", headers=auth).get_json()
    assert state["verify_code_required"] and "did not match" in state["reason"]
    assert client.post("/api/bot/verify", json={"code": ilink.shown_code}, headers=auth).status_code == 202
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code"] is None)
    ilink.confirm()
    wait_for_state(client, auth, "logged_in")


def test_too_many_wrong_codes_bring_a_new_qr_that_does_not_count_as_unscanned(make_app, run_bot, auth, ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_QR_MAX_REFRESH=1)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    first_qr = ilink.qrcode_content
    ilink.scan(code=True)
    for attempt in range(ilink.max_wrong_codes):
        wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"])
        assert client.post("/api/bot/verify", json={"code": "99999"}, headers=auth).status_code == 202, attempt
    # verify_code_blocked: a new QR, and the cap of one unscanned QR is not reached by it.
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["reason"] == "QR expired; new QR (refresh 1)")
    assert ilink.qrcode_content != first_qr
    assert decode_qr(client.get("/api/bot/qr.png", headers=auth).data) == ilink.qrcode_content


def test_a_code_nobody_enters_gives_way_to_a_new_qr(make_app, run_bot, auth, ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_QR_LIFETIME=1)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.scan(code=True)
    wait_for_state(client, auth, "waiting_for_confirm")
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["reason"] == "QR expired; new QR (refresh 1)")
    assert client.post("/api/bot/verify", json={"code": "1234"}, headers=auth).status_code == 409


def test_qr_expiry_refreshes_then_the_cap_needs_login(make_app, run_bot, auth, ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_QR_MAX_REFRESH=3)
    client = app.test_client()
    run_bot(app)
    shown = ["scan the QR with WeChat", "QR expired; new QR (refresh 1)", "QR expired; new QR (refresh 2)"]
    contents = []
    for reason in shown:
        assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["reason"] == reason), reason
        contents.append(decode_qr(client.get("/api/bot/qr.png", headers=auth).data))
        assert contents[-1] == ilink.qrcode_content
        assert ilink.expire_qr()
    state = wait_for_state(client, auth, "needs_login")
    assert state["reason"] == "the login QR expired 3 times with nobody scanning it"
    assert len(set(contents)) == 3
    fetched = sum(1 for _, path, _ in ilink.requests if path.endswith("get_bot_qrcode"))
    assert fetched == 3, "no fourth QR is fetched past the cap"
    assert client.post("/api/bot/login", headers=auth).status_code == 202
    wait_for_state(client, auth, "waiting_for_scan")


def test_scaned_but_redirect_moves_the_polling_to_that_host_over_http(make_app, run_bot, auth):
    from geekai.bot.ilink_emulator import IlinkEmulator

    with IlinkEmulator(qr_poll_hold=0.2, updates_hold=0.3, redirect=True).start() as emu:
        app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=emu.base_url)
        client = app.test_client()
        run_bot(app)
        wait_for_state(client, auth, "waiting_for_scan")
        emu.scan()
        wait_for_state(client, auth, "waiting_for_confirm")
        assert wait_for(lambda: any(h == emu.redirect_host for _, p, h in emu.requests if p.endswith("status")))
        emu.confirm()  # only the redirect host tells the confirm
        wait_for_state(client, auth, "logged_in")
        hosts = [host for _, path, host in emu.requests if path.endswith("get_qrcode_status")]
        first_redirected = hosts.index(emu.redirect_host)
        assert all(host == emu.redirect_host for host in hosts[first_redirected:])


def test_restart_with_the_saved_token_logs_in_without_a_scan(ilink_app, make_app, run_bot, auth, ilink):
    first = run_bot(ilink_app)
    ilink_log_in(ilink_app.test_client(), auth, ilink)
    assert first.shutdown(grace=3)
    assert wait_for(lambda: ilink.notices == ["notifystart", "notifystop"])
    again = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    run_bot(again)
    state = wait_for_state(again.test_client(), auth, "logged_in")
    assert state["account"] == ilink.bot_id
    assert len(ilink.tokens_issued) == 1
    assert sum(1 for _, path, _ in ilink.requests if path.endswith("get_bot_qrcode")) == 1, "a QR for a saved token"
    assert ilink.notices[-1] == "notifystart"


def test_an_expired_saved_token_gives_way_to_a_qr_at_once(ilink_app, make_app, run_bot, auth, ilink):
    first = run_bot(ilink_app)
    ilink_log_in(ilink_app.test_client(), auth, ilink)
    first.shutdown(grace=3)
    ilink.expire_session()
    again = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    run_bot(again)
    wait_for_state(again.test_client(), auth, "waiting_for_scan")
    assert not os.path.exists(token_file(again))
    assert "retrying" not in [e["to"] for e in history(again.test_client(), auth)]


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"bot_token": 1}', b"[]"])
def test_an_unreadable_token_file_is_moved_aside_and_a_qr_follows(ilink_app, run_bot, auth, ilink, content):
    path = token_file(ilink_app)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
        handle.write(content)
    run_bot(ilink_app)
    wait_for_state(ilink_app.test_client(), auth, "waiting_for_scan")
    assert not os.path.exists(path)
    assert any(name.startswith("ilink-token.json.unreadable-") for name in os.listdir(ilink_app.instance_path))


def test_a_token_file_others_could_read_is_closed_and_used(ilink_app, make_app, run_bot, auth, ilink, caplog):
    first = run_bot(ilink_app)
    ilink_log_in(ilink_app.test_client(), auth, ilink)
    first.shutdown(grace=3)
    os.chmod(token_file(ilink_app), 0o644)
    again = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)
    run_bot(again)
    wait_for_state(again.test_client(), auth, "logged_in")
    assert os.stat(token_file(again)).st_mode & 0o777 == 0o600
    assert "was readable by others" in caplog.text


def test_admin_logout_tells_ilink_and_forgets_the_token(ilink_app, run_bot, auth, ilink):
    client = ilink_app.test_client()
    run_bot(ilink_app)
    ilink_log_in(client, auth, ilink)
    response = client.post("/api/bot/logout", headers=auth)
    assert response.status_code == 202 and response.get_json()["state"] == "needs_login"
    assert not os.path.exists(token_file(ilink_app))
    assert wait_for(lambda: ilink.notices[-1:] == ["notifystop"])
    assert client.post("/api/bot/login", headers=auth).status_code == 202
    wait_for_state(client, auth, "waiting_for_scan")  # no token: a scan is needed


def test_stop_while_waiting_for_scan_ends_the_attempt(ilink_app, run_bot, auth, ilink):
    client = ilink_app.test_client()
    runtime = run_bot(ilink_app)
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.post("/api/bot/stop", headers=auth).get_json()["state"] == "stopped"
    assert runtime.supervisor.join(timeout=3), "the login attempt kept running after stop"
    polls = ilink.request_counts["/ilink/bot/get_qrcode_status"]
    assert not wait_for(lambda: ilink.request_counts["/ilink/bot/get_qrcode_status"] > polls, timeout=1)


def test_already_bound_waits_for_a_person(ilink_app, run_bot, auth, ilink, monkeypatch):
    monkeypatch.setattr(ilink, "_qrcode_status", lambda method, q, host: ilink._json({"status": "binded_redirect"}))
    client = ilink_app.test_client()
    run_bot(ilink_app)
    state = wait_for_state(client, auth, "needs_login")
    assert "already connected to another client (binded_redirect)" in state["reason"]


# -- faults at each step of the login ------------------------------------------------------------
@pytest.mark.parametrize("step", ["get_bot_qrcode", "get_qrcode_status"])
def test_a_hang_at_each_step_ends_at_the_login_timeout(make_app, run_bot, auth, ilink, step):
    ilink.set_fault("hang", {step})
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_LOGIN_TIMEOUT=1,
                   BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying", timeout=10)
    assert "did not answer" in state["reason"] and f"{step}" in state["reason"], state["reason"]
    assert client.get("/healthz").status_code == 200


def test_a_hang_at_notifystart_after_the_confirm_ends_at_the_login_timeout(make_app, run_bot, auth, ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_LOGIN_TIMEOUT=1,
                   BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.set_fault("hang", {"notifystart"})
    ilink.confirm()
    state = wait_for_state(client, auth, "retrying", timeout=10)
    assert "did not answer msg/notifystart within 1 s" in state["reason"]


@pytest.mark.parametrize("mode, step, expected", [
    ("5xx", "get_bot_qrcode", "HTTP 503 for get_bot_qrcode"),
    ("garbage", "get_bot_qrcode", "unexpected answer from iLink for get_bot_qrcode"),
    ("drop", "get_bot_qrcode", "cannot reach iLink"),
    ("5xx", "get_qrcode_status", "HTTP 503 for get_qrcode_status"),
    ("garbage", "get_qrcode_status", "unexpected answer from iLink for get_qrcode_status"),
])
def test_bad_answers_at_login_are_transient(make_app, run_bot, auth, ilink, mode, step, expected):
    ilink.set_fault(mode, {step})
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying")
    assert expected in state["reason"], state["reason"]
    assert state["attempt"] == 1 and state["next_retry_at"]


def test_no_network_retries_and_recovers_when_ilink_comes_back(make_app, run_bot, auth, ilink):
    ilink.set_fault("5xx", {"get_bot_qrcode"})
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_RETRY_FIRST_SECONDS=0.3)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "retrying")
    ilink.set_fault(None)
    wait_for_state(client, auth, "waiting_for_scan")


def test_unreachable_ilink_is_retried_with_the_reason(make_app, run_bot, auth):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL="http://127.0.0.1:9")
    client = app.test_client()
    run_bot(app)
    state = wait_for_state(client, auth, "retrying")
    assert "cannot reach iLink at 127.0.0.1:9" in state["reason"] and "Connection refused" in state["reason"]


def test_a_failure_never_shows_the_qr_value_in_its_reason_or_traceback(make_app, run_bot, auth, ilink):
    app = make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_RETRY_FIRST_SECONDS=30)
    client = app.test_client()
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    qrcode = ilink._qr.qrcode
    # The scan redirects the polling to a host that refuses: requests' own error names the URL,
    # ?qrcode= included.
    ilink.redirect, ilink._redirect_url = True, "http://127.0.0.1:9"
    ilink.scan()
    state = wait_for_state(client, auth, "retrying")
    assert "cannot reach iLink at 127.0.0.1:9" in state["reason"] and "Traceback" in state["detail"]
    assert qrcode not in state["reason"] + state["detail"]
