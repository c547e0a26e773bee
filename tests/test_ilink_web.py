"""iLink from the outside: POST /api/bot/verify, the page, `bot login --wait` and the demo phone."""
from __future__ import annotations

import re
import threading

import pytest

from conftest import API_TOKEN, csrf_token, sign_in, wait_for, wait_for_state


def asked_for_code(client, auth, ilink, code=True):
    wait_for_state(client, auth, "waiting_for_scan")
    ilink.scan(code=code)
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"])


def test_verify_needs_the_admin(ilink_app):
    response = ilink_app.test_client().post("/api/bot/verify", json={"code": "1234"})
    assert response.status_code == 401


def test_verify_from_a_browser_needs_csrf(ilink_app, run_bot, auth, ilink):
    run_bot(ilink_app)
    client = ilink_app.test_client()
    sign_in(client)
    asked_for_code(client, auth, ilink)
    response = client.post("/api/bot/verify", data={"code": ilink.shown_code})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert client.get("/api/bot", headers=auth).get_json()["verify_code"] == "required"


def verify_form(client) -> str:
    """The opening tag of the page's verification-code form."""
    return re.search(r'<form id="verify-form"[^>]*>', client.get("/").get_data(as_text=True)).group(0)


def test_the_page_form_posts_the_code_with_its_csrf_token(ilink_app, run_bot, auth, ilink):
    run_bot(ilink_app)
    client = ilink_app.test_client()
    sign_in(client)
    wait_for_state(client, auth, "waiting_for_scan")
    assert "hidden" in verify_form(client)  # no code asked yet
    asked_for_code(client, auth, ilink)
    assert "hidden" not in verify_form(client) and 'action="/api/bot/verify"' in verify_form(client)
    response = client.post("/api/bot/verify", data={"code": ilink.shown_code, "csrf_token": csrf_token(client, "/")},
                           headers={"Accept": "text/html"})
    assert response.status_code == 302  # a plain form post without JS comes back to the page
    assert wait_for(lambda: ilink.state == "scanned")


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "12a4"}, {"code": 1234}, {"code": "12345678901"},
                                  {"code": ["1234"]}, {"code": None}, ["1234"], "1234"])
def test_bad_input_is_400_naming_the_field(ilink_app, run_bot, auth, ilink, body):
    run_bot(ilink_app)
    client = ilink_app.test_client()
    asked_for_code(client, auth, ilink)
    response = client.post("/api/bot/verify", json=body, headers=auth)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["field"] == "code" and "code must be the number the phone shows" in answer["error"]
    assert client.get("/api/bot", headers=auth).get_json()["verify_code"] == "required", "nothing was taken"


def test_a_body_that_is_not_json_is_400(ilink_app, auth):
    response = ilink_app.test_client().post("/api/bot/verify", data=b"{oops", headers=auth,
                                            content_type="application/json")
    assert response.status_code == 400 and response.get_json()["field"] == "code"


def test_verify_when_no_code_is_asked_is_409(ilink_app, run_bot, auth, ilink):
    run_bot(ilink_app)
    client = ilink_app.test_client()
    wait_for_state(client, auth, "waiting_for_scan")
    response = client.post("/api/bot/verify", json={"code": "1234"}, headers=auth)
    assert response.status_code == 409 and response.get_json()["error"] == "no verification code is asked for now"
    ilink.scan(code=True)
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"])
    assert client.post("/api/bot/verify", json={"code": ilink.shown_code}, headers=auth).status_code == 202
    # Taken once: a second code while the first is checked is refused, not queued.
    second = client.post("/api/bot/verify", json={"code": "1234"}, headers=auth)
    assert second.status_code == 409


def test_verify_without_a_bot_in_this_process_is_503(ilink_app, auth):
    response = ilink_app.test_client().post("/api/bot/verify", json={"code": "1234"}, headers=auth)
    assert response.status_code == 503 and "does not run in this process" in response.get_json()["error"]


def test_api_state_says_whether_a_code_is_required(ilink_app, run_bot, auth, ilink):
    run_bot(ilink_app)
    client = ilink_app.test_client()
    assert wait_for_state(client, auth, "waiting_for_scan")["verify_code_required"] is False
    ilink.scan(code=True)
    state = wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"]
                     and client.get("/api/bot", headers=auth).get_json())
    assert state["state"] == "waiting_for_confirm" and state["verify_code"] == "required"


# -- the CLI ------------------------------------------------------------------------------------------
def qr_fetched(app) -> bool:
    """Whether someone (the CLI) has fetched the login QR from this app."""
    requests, _ = app.extensions["geekai.metrics.http"].snapshot()
    return requests.get(("api.bot_qr", "GET", "200"), 0) > 0


def test_login_wait_prompts_for_the_code_on_the_terminal_again_when_wrong(ilink_app, run_bot, auth, ilink, serve):
    run_bot(ilink_app)
    url = serve(ilink_app)
    client = ilink_app.test_client()

    def phone():
        assert wait_for(lambda: qr_fetched(ilink_app), timeout=20)  # the CLI has shown the QR
        ilink.scan(code="4821")
        assert wait_for(lambda: ilink.state == "scanned", timeout=20)  # the right code came
        ilink.confirm()

    threading.Thread(target=phone, daemon=True).start()
    result = ilink_app.test_cli_runner().invoke(args=["bot", "login", "--wait", "--timeout", "30"], input="0000\n4821\n",
                                                env={"GEEKAI_URL": url, "GEEKAI_API_TOKEN": API_TOKEN})
    assert result.exit_code == 0, result.output
    assert "█" in result.output and "scan this QR" in result.output
    assert "The phone shows a number: enter it here" in result.output
    assert "That code did not match: enter the number shown on the phone again" in result.output
    assert f"logged in as {ilink.bot_id}" in result.output


def test_login_wait_without_a_terminal_says_where_to_enter_the_code(ilink_app, run_bot, auth, ilink, serve):
    run_bot(ilink_app)
    polls = []  # the CLI's looks at the state (the test client's own do not pass here)

    def counted(environ, start_response):
        if environ["PATH_INFO"] == "/api/bot":
            polls.append(1)
        return ilink_app(environ, start_response)

    url = serve(counted)
    client = ilink_app.test_client()

    def phone():
        assert wait_for(lambda: qr_fetched(ilink_app), timeout=20)
        ilink.scan(code="4821")
        assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"])
        seen = len(polls)
        # The CLI looked, found no input and said so; then the page takes the code.
        assert wait_for(lambda: len(polls) >= seen + 2, timeout=10)
        assert client.post("/api/bot/verify", json={"code": "4821"}, headers=auth).status_code == 202
        assert wait_for(lambda: ilink.state == "scanned")
        ilink.confirm()

    threading.Thread(target=phone, daemon=True).start()
    result = ilink_app.test_cli_runner().invoke(args=["bot", "login", "--wait", "--timeout", "30"], input="",
                                                env={"GEEKAI_URL": url, "GEEKAI_API_TOKEN": API_TOKEN})
    assert result.exit_code == 0, result.output
    assert "enter it on the status page (or POST /api/bot/verify)" in result.output


# -- demo-ilink: the simulated phone ------------------------------------------------------------------
@pytest.fixture
def demo(make_app, run_bot):
    app = make_app(BOT_BACKEND="demo-ilink")
    run_bot(app)
    yield app
    app.extensions["geekai.emulator"].stop()


def press(client, action, **form):
    return client.post(f"/api/demo/phone/{action}", data={"csrf_token": csrf_token(client, "/"), **form},
                       headers={"Accept": "application/json"})


def test_the_ilink_demo_phone_scans_asks_a_code_confirms_texts_and_expires(demo, auth):
    client = demo.test_client()
    sign_in(client)
    wait_for_state(client, auth, "waiting_for_scan")
    page = client.get("/").get_data(as_text=True)
    assert "/api/demo/phone/scan_code" in page and "iLink" in page
    view = press(client, "scan_code").get_json()
    assert view["ok"] and view["phone"] == "need_code" and view["code"].isdigit()
    wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code_required"])
    assert client.post("/api/bot/verify", json={"code": view["code"]}, headers=auth).status_code == 202
    assert wait_for(lambda: client.get("/api/demo/phone").get_json()["phone"] == "scanned")
    assert press(client, "confirm").get_json()["ok"]
    wait_for_state(client, auth, "logged_in")
    received = []
    demo.extensions["geekai.bot"].supervisor.handlers.append(received.append)
    assert press(client, "send_text", text="你好").get_json()["ok"]
    assert wait_for(lambda: received) and received[0].text == "你好"
    assert wait_for(lambda: client.get("/api/demo/phone").get_json()["texts"][0]["delivered"])
    assert press(client, "logout").get_json()["ok"]  # the session expires (-14): a fresh QR
    wait_for_state(client, auth, "waiting_for_scan")


def test_a_code_posted_to_another_process_reaches_the_login_that_waits(make_app, run_bot, auth, ilink):
    config = dict(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url, BOT_LEASE_SECONDS=1)
    leader_app, follower_app = make_app(**config), make_app(**config)
    leader, follower = run_bot(leader_app), run_bot(follower_app)
    assert leader.leading and not follower.leading
    client = follower_app.test_client()  # another worker: the login runs in the leader
    asked_for_code(client, auth, ilink, code="4821")
    assert client.post("/api/bot/verify", json={"code": "0000"}, headers=auth).status_code == 202
    assert wait_for(lambda: client.get("/api/bot", headers=auth).get_json()["verify_code"] == "wrong")
    answer = client.post("/api/bot/verify", json={"code": "4821"}, headers=auth)
    assert answer.status_code == 202, answer.get_json()
    assert wait_for(lambda: ilink.state == "scanned")
    ilink.confirm()
    wait_for_state(client, auth, "logged_in")
