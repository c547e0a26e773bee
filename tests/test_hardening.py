"""Issue 11, through the real socket: `python app.py` (waitress) as a process, spoken to over HTTP.

Proxies, body limits, sessions, security headers, bad input, redaction, demo mode, file modes.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time

import pytest

from conftest import API_TOKEN, wait_for
from webclient import Browser

PASSWORD = "correct horse battery"
ADMIN = {"GEEKAI_ADMIN_PASSWORD": PASSWORD, "GEEKAI_API_TOKEN": API_TOKEN, "GEEKAI_BOT_ENABLED": "false"}
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def session_cookie(answer) -> str:
    return next(line for line in answer.cookie_lines() if line.startswith("session="))


def log_text(svc) -> str:
    return "".join(svc.log)


# ----- 1. behind a proxy ---------------------------------------------------------------------

def test_forwarded_headers_reach_the_app_through_waitress_and_the_cookie_is_secure(service):
    svc = service(GEEKAI_PROXY_COUNT="1", **ADMIN)
    # Over HTTPS the CSRF check wants a same-site Referer: it matches only if the app sees the
    # forwarded host and scheme.
    proxy = Browser(svc.url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                "X-Forwarded-Host": "bot.example.com", "Referer": "https://bot.example.com/login"})
    page = proxy.get("/login")
    assert "Secure" in session_cookie(page)
    answer = proxy.sign_in(PASSWORD)
    # The redirect is built from the forwarded host and scheme, the cookie is Secure.
    assert answer.status == 302 and answer.headers["Location"] in ("/", "https://bot.example.com/")
    assert "Secure" in session_cookie(answer)
    assert wait_for(lambda: "admin logged in from 203.0.113.9" in log_text(svc), timeout=5)


def test_without_a_declared_proxy_forwarded_headers_are_ignored(service):
    svc = service(**ADMIN)
    forger = Browser(svc.url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert "Secure" not in session_cookie(forger.get("/login"))
    assert forger.sign_in(PASSWORD).status == 302
    assert wait_for(lambda: "admin logged in from 127.0.0.1" in log_text(svc), timeout=5)
    assert "203.0.113.9" not in log_text(svc)


def test_a_guesser_behind_the_proxy_locks_out_only_itself(service):
    svc = service(GEEKAI_PROXY_COUNT="1", **ADMIN)
    # nginx appends the real peer: whatever the guesser puts in front is not trusted (one hop).
    guesser = Browser(svc.url, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    answers = [guesser.sign_in("wrong password").status for _ in range(6)]
    assert answers == [401] * 5 + [429]
    assert guesser.sign_in(PASSWORD).status == 429  # locked, even with the right password
    admin = Browser(svc.url, **{"X-Forwarded-For": "198.51.100.7"})
    assert admin.sign_in(PASSWORD).status == 302
    assert admin.get("/api/bot").status == 200


def test_the_admins_browser_still_gets_in_while_its_address_is_locked(service):
    svc = service(**ADMIN)  # no proxy declared: everybody is 127.0.0.1
    admin = Browser(svc.url)
    assert admin.sign_in(PASSWORD).status == 302 and "geekai_device" in admin.cookies
    assert admin.sign_out().status == 302
    guesser = Browser(svc.url)
    assert [guesser.sign_in("guess").status for _ in range(6)][-1] == 429
    assert Browser(svc.url).sign_in(PASSWORD).status == 429  # a new browser from that address waits
    assert admin.sign_in(PASSWORD).status == 302  # the browser that signed in before does not
    assert admin.get("/api/bot").status == 200
    # A forged device cookie is no way around the lock.
    forged = Browser(svc.url)
    forged.cookies["geekai_device"] = "made-up.value"
    assert forged.sign_in(PASSWORD).status == 429


# ----- 2. body size --------------------------------------------------------------------------

def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1))


def _raw_post(svc, path: str, head: str) -> socket.socket:
    host, port = svc.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
    return sock


def _answer_head(sock) -> str:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.decode("latin-1")


def test_a_body_over_the_limit_is_answered_413_before_it_is_sent(service):
    svc = service(**ADMIN)
    svc.get("/readyz")  # the app is built
    before = _rss_kib(svc.proc.pid)
    sock = _raw_post(svc, "/login", "Content-Type: application/x-www-form-urlencoded\r\n"
                                    f"Content-Length: {300 * 1024 * 1024}\r\n")
    try:
        # Not one byte of the 300 MB body was sent: the answer comes from the headers alone.
        assert _answer_head(sock).startswith("HTTP/1.1 413")
    finally:
        sock.close()
    assert _rss_kib(svc.proc.pid) - before < 10 * 1024


def test_a_chunked_body_is_cut_off_at_the_limit_and_memory_does_not_grow(service):
    svc = service(**ADMIN)
    svc.get("/readyz")  # the app is built
    before = _rss_kib(svc.proc.pid)
    sock = _raw_post(svc, "/login", "Content-Type: application/x-www-form-urlencoded\r\n"
                                    "Transfer-Encoding: chunked\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"a" * 64 * 1024)
    sent = 0
    try:
        for _ in range(50 * 16):  # up to 50 MB, stopped by the server well before
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed the connection
                break
            sent += 64 * 1024
        head = _answer_head(sock)
    finally:
        sock.close()
    assert head.startswith("HTTP/1.1 413")
    assert sent < 20 * 1024 * 1024, f"the server read {sent} bytes past a 1 MiB limit"
    assert _rss_kib(svc.proc.pid) - before < 10 * 1024


def test_the_body_limit_is_configurable(service):
    svc = service(GEEKAI_MAX_CONTENT_LENGTH="4096", **ADMIN)
    client = Browser(svc.url, **BEARER)
    big = client.post_json("/api/orders", {"amount": "1.00", "reference": "x" * 5000})
    assert big.status == 413
    small = client.post_json("/api/orders", {"amount": "1.00", "reference": "x" * 100})
    assert small.status == 201


# ----- 5. sessions ---------------------------------------------------------------------------

def test_a_saved_cookie_stops_working_after_logout(service):
    svc = service(**ADMIN)
    browser = Browser(svc.url)
    assert browser.sign_in(PASSWORD).status == 302
    saved = dict(browser.cookies)
    assert browser.get("/api/bot").status == 200
    assert browser.sign_out().status == 302
    thief = Browser(svc.url)
    thief.cookies.update(saved)
    answer = thief.get("/api/bot")
    assert answer.status == 401 and "session ended" in answer.json()["error"]
    assert "admin-only" not in thief.get("/").text and thief.get("/payments").status == 302


def test_an_open_live_page_ends_with_the_logout(service):
    import http.client

    svc = service(**ADMIN)
    browser = Browser(svc.url)
    assert browser.sign_in(PASSWORD).status == 302
    conn = http.client.HTTPConnection(browser.host, browser.port, timeout=10)
    cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    conn.request("GET", "/api/bot/stream", headers={"Cookie": cookies})
    stream = conn.getresponse()
    assert stream.status == 200
    assert stream.read(6) == b"retry:"  # the stream is live (read() undoes the chunking)
    assert browser.sign_out().status == 302
    rest = stream.read()  # returns once the server ends the stream (a timeout would raise)
    assert b"event: state" in rest or rest == b""
    conn.close()


def test_every_session_ends_when_the_password_changes(service):
    svc = service(**ADMIN)
    browser = Browser(svc.url)
    assert browser.sign_in(PASSWORD).status == 302
    svc.terminate()
    again = service(**dict(ADMIN, GEEKAI_ADMIN_PASSWORD="a different password"))
    browser.host, browser.port = Browser(again.url).host, Browser(again.url).port
    assert browser.get("/api/bot").status == 401
    assert browser.sign_in("a different password").status == 302
    assert browser.get("/api/bot").status == 200


def test_a_session_ends_after_its_lifetime(service):
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    svc = service(**ADMIN)
    browser = Browser(svc.url)
    answer = browser.sign_in(PASSWORD)
    assert "Expires=" in session_cookie(answer)  # 7 days by default, not the browser session
    signer = Flask("forger")
    signer.secret_key = json.loads((svc.instance / "secrets.json").read_text())["SECRET_KEY"]
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    current = serializer.loads(browser.cookies["session"])
    assert browser.get("/api/bot").status == 200
    for age, status in ((8 * 86400, 401), (6 * 86400, 200)):
        browser.cookies["session"] = serializer.dumps(dict(current, at=int(time.time()) - age))
        assert browser.get("/api/bot").status == status


# ----- 6. framing and sniffing ---------------------------------------------------------------

def test_every_response_has_the_security_headers(service):
    svc = service(**ADMIN)
    browser = Browser(svc.url)
    answers = [browser.get(path) for path in ("/healthz", "/", "/login", "/api/bot", "/static/style.css",
                                              "/no-such-page", "/api/orders/1", "/payments")]
    answers.append(browser.post_form("/login", {"password": "x"}))  # CSRF refusal
    assert [a.status for a in answers] == [200, 200, 200, 401, 200, 404, 401, 302, 400]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "DENY"
        csp = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"


# ----- 8. bad input: 400 naming the parameter ------------------------------------------------

HUGE = str(2**64)
DEEP = "[" * 100_000 + "]" * 100_000

BAD_INPUT = [
    ("GET", f"/api/bot/events?before={HUGE}", None, "before"),
    ("GET", f"/api/payments?after_id={HUGE}", None, "after_id"),
    ("GET", f"/payments?after_id={HUGE}", None, "after_id"),
    ("GET", f"/payments.csv?after_id={HUGE}", None, "after_id"),
    ("GET", f"/api/orders/{HUGE}", None, "order_id"),
    ("POST", f"/api/deliveries/{HUGE}/retry", None, "delivery_id"),
    ("GET", "/api/payments?since=9999-12-31T23:59:59-01:00", None, "since"),
    ("GET", "/api/payments?until=9999-12-31", None, "until"),
    ("GET", "/payments?since=0001-01-01", None, "since"),
    ("GET", "/payments?until=9999-12-31", None, "until"),
    ("GET", "/payments.csv?since=0001-01-01", None, "since"),
    ("GET", "/payments.csv?until=9999-12-31", None, "until"),
    ("POST", "/api/orders", '{"amount": "1.00", "reference": "\\ud800"}', "reference"),
    ("POST", "/api/orders", DEEP, "the JSON body"),
    ("POST", "/api/payments/42/claim", DEEP, "the JSON body"),
    ("POST", "/api/payments/42/claim", '{"order_id": "²"}', "order_id"),
    ("POST", "/api/payments/42/claim", f'{{"order_id": {HUGE}}}', "order_id"),
    ("POST", "/api/payments/42/claim", '{"claimed_by": "\\udfff"}', "claimed_by"),
    ("GET", "/api/bot/stream?last_id=" + "9" * 5000, None, "last_id"),
    ("GET", "/api/bot/events?limit=" + "9" * 5000, None, "limit"),
]


@pytest.fixture(scope="module")
def admin_service(tmp_path_factory):
    from service import Service

    svc = Service(tmp_path_factory.mktemp("hardening") / "instance", **ADMIN)
    svc.get("/readyz")  # the app is built
    yield svc
    svc.proc.kill()
    svc.proc.wait()
    svc.proc.stderr.close()


@pytest.mark.parametrize("method, path, body, parameter", BAD_INPUT)
def test_bad_input_is_a_400_naming_the_parameter(admin_service, method, path, body, parameter):
    client = Browser(admin_service.url, **BEARER)
    if body is None:
        answer = client.request(method, path)
    else:
        answer = client.post_json(path, body)
    assert answer.status == 400, answer.text[:300]
    shown = answer.json()
    assert shown["parameter"] == parameter and parameter in shown["error"]


def test_a_huge_last_event_id_header_is_a_400(admin_service):
    answer = Browser(admin_service.url, **BEARER).get("/api/bot/stream", **{"Last-Event-ID": "1" * 30})
    assert answer.status == 400 and answer.json()["parameter"] == "Last-Event-ID"


def test_unknown_query_keys_do_not_reach_url_for(admin_service):
    answer = Browser(admin_service.url, **BEARER).get("/payments?_scheme=javascript&_external=&status=unclaimed&x=1")
    assert answer.status == 200
    link = re.search(r'id="csv" href="([^"]+)"', answer.text).group(1)
    assert link == "/payments.csv?status=unclaimed"


def test_send_text_with_a_non_string_is_a_400(service):
    svc = service(GEEKAI_BOT_BACKEND="demo", **dict(ADMIN, GEEKAI_BOT_ENABLED="true"))
    client = Browser(svc.url, **BEARER)
    assert wait_for(lambda: client.get("/api/bot").json()["state"] == "waiting_for_scan", timeout=15)
    for body in ({"text": 5}, {"text": ["a"]}, [1, 2], {"text": "x" * 501}):
        answer = client.post_json("/api/demo/phone/send_text", body)
        assert answer.status == 400 and answer.json()["parameter"] == "text", answer.text


def test_a_csrf_failure_on_the_api_is_json(admin_service):
    browser = Browser(admin_service.url)
    assert browser.sign_in(PASSWORD).status == 302
    answer = browser.request("POST", "/api/bot/stop")
    assert answer.status == 400 and answer.headers["Content-Type"].startswith("application/json")
    assert "CSRF" in answer.json()["error"]


# ----- 3. secrets out of error texts ---------------------------------------------------------

def test_a_webhook_key_never_appears_in_errors_pages_apis_or_the_log(service):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # connection refused: requests' error quotes the URL, query and all
    secret = "SECRETKEY-0123456789"
    svc = service(GEEKAI_ALERT_WECOM_URL=f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={secret}",
                  GEEKAI_ALERT_FEISHU_URL=f"http://127.0.0.1:{port}/open-apis/bot/v2/hook/{secret}",
                  GEEKAI_OUTBOX_MAX_ATTEMPTS="1", GEEKAI_OUTBOX_INTERVAL_SECONDS="0.1", **ADMIN)
    client = Browser(svc.url, **BEARER)
    queued = client.request("POST", "/api/alerts/test")
    assert queued.status == 202

    def failed():
        rows = client.get("/api/deliveries").json()["deliveries"]
        return len(rows) == 2 and all(r["status"] == "failed" for r in rows) and rows

    rows = wait_for(failed, timeout=15)
    assert rows, client.get("/api/deliveries").text
    assert all("ConnectionError" in r["last_error"] and "***" in r["last_error"] for r in rows)
    retried = client.request("POST", f"/api/deliveries/{rows[0]['id']}/retry")
    shown = [client.get("/api/deliveries").text, client.get("/deliveries").text, client.get("/api/alerts").text,
             retried.text, queued.text]
    with sqlite3.connect(svc.instance / "geekai.sqlite") as conn:
        stored = [e for (e,) in conn.execute("SELECT last_error FROM outbox")]
    assert all(e and secret not in e for e in stored)
    for text in shown:
        assert secret not in text
    assert "failed after 1 attempts" in log_text(svc) and secret not in log_text(svc)


# ----- 9. demo mode --------------------------------------------------------------------------

def test_the_demo_emulator_port_takes_no_commands(service):
    svc = service(GEEKAI_BOT_BACKEND="demo", **dict(ADMIN, GEEKAI_BOT_ENABLED="true"))
    client = Browser(svc.url, **BEARER)
    assert wait_for(lambda: client.get("/api/bot").json()["state"] == "waiting_for_scan", timeout=15)
    found = re.search(r"WeChat emulator serves on (http://[\d.]+:\d+)", log_text(svc))
    assert found, log_text(svc)
    import requests

    for action in ("scan", "confirm", "inject", "send_text"):
        answer = requests.post(found.group(1) + "/_emulator/" + action, timeout=5,
                               json={"MsgType": 49, "Content": "微信支付收款 100.00 元", "text": "x"})
        assert answer.status_code == 404  # no control endpoints at all: the phone acts in-process
    assert requests.get(found.group(1) + "/_emulator/state", timeout=5).status_code == 404
    assert client.get("/api/bot").json()["state"] == "waiting_for_scan"  # nobody scanned
    # The page's simulated phone acts in-process and still works.
    assert client.request("POST", "/api/demo/phone/scan").json()["ok"] is True
    assert wait_for(lambda: client.get("/api/bot").json()["state"] == "waiting_for_confirm", timeout=10)


def test_demo_mode_refuses_a_payment_callback_url(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT_DIR

    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(GEEKAI_PAYMENT_CALLBACK_URL="https://shop.example.com/paid", GEEKAI_PAYMENT_CALLBACK_SECRET="s" * 16)
    result = subprocess.run([sys.executable, "app.py", "--demo", "--port", "0", "--instance", str(tmp_path / "i")],
                            cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "config error: PAYMENT_CALLBACK_URL must be unset in demo mode" in result.stderr


# ----- 10. loose file modes ------------------------------------------------------------------

def test_loose_credential_files_are_tightened_at_start_with_a_warning(service, tmp_path, migrated_sqlite):
    import shutil

    from werkzeug.security import generate_password_hash

    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    (instance / "secrets.json").write_text(json.dumps({
        "SECRET_KEY": "k" * 32, "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD)}))
    shutil.copyfile(migrated_sqlite, instance / "geekai.sqlite")
    for name in ("geekai.sqlite-wal", "geekai.sqlite-shm", "wxpy-session.pkl", "wxpy-session.pkl.stale-1700000000"):
        (instance / name).write_bytes(b"")
    loose = ["secrets.json", "geekai.sqlite", "geekai.sqlite-wal", "geekai.sqlite-shm", "wxpy-session.pkl",
             "wxpy-session.pkl.stale-1700000000"]
    for name in loose:
        os.chmod(instance / name, 0o644)
    env = {k: v for k, v in ADMIN.items() if k != "GEEKAI_ADMIN_PASSWORD"}
    svc = service(GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9", **dict(env, GEEKAI_BOT_ENABLED="true"))
    svc.get("/readyz")  # the app is built
    assert wait_for(lambda: all(os.stat(instance / n).st_mode & 0o777 == 0o600 for n in loose), timeout=10), \
        {n: oct(os.stat(instance / n).st_mode & 0o777) for n in loose}
    for name in loose:
        assert f"{instance / name} was readable or writable by others (mode 644); it is now 0600" in log_text(svc)
    assert Browser(svc.url).sign_in(PASSWORD).status == 302  # the tightened secrets still work


def test_under_gunicorn_the_proxy_headers_and_the_body_limit_apply_too(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT_DIR

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(ADMIN, GEEKAI_INSTANCE_PATH=str(instance), GEEKAI_PROXY_COUNT="1", NO_PROXY="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
                             "-b", f"127.0.0.1:{port}", "geekai.wsgi:app"], cwd=ROOT_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return Browser(url).get("/healthz").status == 200
            except OSError:
                return False
        assert wait_for(up, timeout=30)
        proxy = Browser(url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                "X-Forwarded-Host": "bot.example.com", "Referer": "https://bot.example.com/login"})
        assert "Secure" in session_cookie(proxy.get("/login"))
        assert proxy.sign_in(PASSWORD).status == 302
        guesser = Browser(url, **{"X-Forwarded-For": "203.0.113.10"})
        assert [guesser.sign_in("guess").status for _ in range(6)][-1] == 429
        assert Browser(url, **{"X-Forwarded-For": "198.51.100.7"}).sign_in(PASSWORD).status == 302
        big = Browser(url, **BEARER).post_json("/api/orders", {"amount": "1.00", "reference": "x" * (2 * 1024 * 1024)})
        assert big.status == 413
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "admin logged in from 203.0.113.9" in output
