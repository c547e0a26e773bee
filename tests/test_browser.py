"""The status page in Debian's headless Chromium against the real server (`python app.py`).

Screenshots of each state go to a temporary folder, or to docs/screenshots/ with
GEEKAI_SCREENSHOTS=docs (how the committed ones were made).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import ADMIN_PASSWORD, API_TOKEN, ROOT_DIR, wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
if not HAVE_BROWSER and os.environ.get("CI"):
    raise RuntimeError("CI must run the browser tests: apt-get install chromium chromium-driver")
pytestmark = pytest.mark.skipif(not HAVE_BROWSER, reason="needs chromium and chromium-driver (apt)")

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,1300")


class Server:
    """`python app.py` on a free loopback port, with a known admin password and token."""

    def __init__(self, instance, *args, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
        environ.update({"NO_PROXY": "127.0.0.1", "GEEKAI_ADMIN_PASSWORD": ADMIN_PASSWORD,
                        "GEEKAI_API_TOKEN": API_TOKEN, "GEEKAI_BOT_RETRY_FIRST_SECONDS": "0.5", **env})
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", "0", "--instance", str(instance), *args],
                                     cwd=ROOT_DIR, env=environ, stderr=subprocess.PIPE, text=True)
        self.instance = instance
        self.log: list[str] = []
        for line in self.proc.stderr:
            self.log.append(line)
            if line.startswith("geekai: serving on "):
                threading.Thread(target=self.log.extend, args=(self.proc.stderr,), daemon=True).start()
                self.url = line.split()[-1]
                return
        raise AssertionError(f"server did not start: {''.join(self.log)}")

    def status(self, path: str, token: str | None = None) -> int:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def server(tmp_path):
    started = []

    def start(*args, **env):
        started.append(Server(tmp_path / f"instance{len(started)}", *args, **env))
        return started[-1]

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="module")
def chrome():
    profile = tempfile.mkdtemp(prefix="geekai-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP refusals are console errors
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chrome):
    """The shared Chromium with no cookies left from an earlier test."""
    chrome.delete_all_cookies()
    chrome.set_window_size(1200, 1300)
    yield chrome
    chrome.get("about:blank")


@pytest.fixture
def shoot(tmp_path):
    folder = os.path.join(ROOT_DIR, "docs", "screenshots") if os.environ.get("GEEKAI_SCREENSHOTS") == "docs" \
        else str(tmp_path)

    def save(driver, name: str) -> None:
        time.sleep(0.2)  # let the QR image and fonts paint
        assert driver.save_screenshot(os.path.join(folder, f"{name}.png"))

    return save


def wait_until(driver, predicate, timeout=5.0, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: predicate(d), message)


def page_state(driver) -> str:
    return driver.find_element(By.ID, "bot").get_attribute("data-state")


def wait_for_page_state(driver, state, timeout=5.0) -> float:
    """Wait for the page (not the server) to show `state`; return how long it took."""
    began = time.monotonic()
    wait_until(driver, lambda d: page_state(d) == state, timeout, f"page never showed {state}")
    return time.monotonic() - began


def sign_in(driver, url, lang="en"):
    driver.get(f"{url}/login?lang={lang}")
    driver.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "bot"), message="no status page after sign-in")


def api(svc, method: str, path: str, body: dict | None = None) -> dict:
    """The service's JSON API with the bearer token."""
    import json

    request = urllib.request.Request(svc.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def visible(driver, element_id) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def mark_page(driver) -> None:
    """A marker that a reload would wipe out."""
    driver.execute_script("window.__sameDocument = true")


def same_page(driver) -> bool:
    return driver.execute_script("return window.__sameDocument === true")


def test_admin_scans_and_confirms_and_the_page_follows_without_reload(server, browser, emulator, shoot):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    browser.get(f"{svc.url}/?lang=en")
    shoot(browser, "01-public")
    assert not browser.find_elements(By.ID, "qr")
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "waiting_for_scan")
    wait_until(browser, lambda d: d.execute_script("return document.getElementById('qr').naturalWidth") > 0,
               message="the QR image never loaded")
    assert "expires in" in browser.find_element(By.ID, "qr-countdown").text
    wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "live")
    shoot(browser, "02-waiting-for-scan")
    mark_page(browser)

    emulator.scan()
    assert wait_for_page_state(browser, "waiting_for_confirm") < 1.0
    assert visible(browser, "panel-confirm") and not visible(browser, "panel-scan")
    shoot(browser, "03-waiting-for-confirm")

    emulator.confirm()
    wait_for_page_state(browser, "logged_in")
    assert browser.find_element(By.ID, "nickname").text == emulator.nickname
    assert browser.find_element(By.ID, "online").text == "Bot is online"
    history = browser.find_element(By.ID, "events").text
    assert "waiting for confirm → logged in" in history  # the states by name, as the badge shows them
    assert browser.find_element(By.CSS_SELECTOR, '#counters tr[data-window="24h"] [data-field="logins"]').text == "1"
    assert same_page(browser)
    shoot(browser, "04-logged-in")

    emulator.logout()  # from the phone: the page must show it within a second
    began = time.monotonic()
    wait_until(browser, lambda d: page_state(d) != "logged_in", timeout=1.0)
    assert time.monotonic() - began < 1.0 and same_page(browser)


def test_controls_stop_start_and_logout_are_recorded_with_the_actor(server, browser, emulator, shoot):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "waiting_for_scan")
    mark_page(browser)

    def button(command, panel=".controls"):
        return browser.find_element(By.CSS_SELECTOR, f'{panel} button[data-command="{command}"]')

    # Start makes no sense while a QR waits; logging out of WeChat without a login neither.
    assert not button("start").is_enabled() and button("stop").is_enabled() and button("login").is_enabled()
    # Stop asks first; "cancel" leaves everything as it was.
    button("stop").click()
    assert "receives no messages or payment notices" in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    time.sleep(0.5)
    assert page_state(browser) == "waiting_for_scan"
    assert "stopped by admin" not in browser.find_element(By.ID, "events").text
    button("stop").click()
    browser.switch_to.alert.accept()
    wait_for_page_state(browser, "stopped")
    assert "stopped by admin (web)" in browser.find_element(By.ID, "events").text
    assert not button("stop").is_enabled() and button("start").is_enabled()
    button("start").click()  # no question: nothing is lost by starting
    wait_for_page_state(browser, "waiting_for_scan")
    emulator.scan()
    wait_for_page_state(browser, "waiting_for_confirm")
    emulator.confirm()
    wait_for_page_state(browser, "logged_in")
    assert not button("login").is_enabled() and not button("start").is_enabled()
    button("logout").click()
    assert "not signing out of this page" in browser.switch_to.alert.text
    browser.switch_to.alert.accept()
    wait_for_page_state(browser, "needs_login")
    assert not button("logout").is_enabled()
    assert visible(browser, "panel-needs-login")
    shoot(browser, "05-needs-login")
    browser.find_element(By.CSS_SELECTOR, '#panel-needs-login button[data-command="login"]').click()
    wait_for_page_state(browser, "waiting_for_scan")
    assert same_page(browser)


def test_retrying_shows_the_countdown_a_folded_traceback_and_retry_now(server, browser, shoot):
    svc = server(GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9", GEEKAI_BOT_RETRY_FIRST_SECONDS="60")
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "retrying")
    wait_until(browser, lambda d: re.search(r"retrying in [01]:\d\d\)$", d.find_element(By.ID, "retry-countdown").text))
    detail = browser.find_element(By.ID, "detail")
    assert detail.get_attribute("open") is None and not visible(browser, "detail-text")
    detail.find_element(By.TAG_NAME, "summary").click()
    assert "Traceback" in browser.find_element(By.ID, "detail-text").text
    shoot(browser, "09-retrying")
    browser.find_element(By.CSS_SELECTOR, '#panel-retrying button[data-command="login"]').click()
    wait_until(browser, lambda d: "login requested by admin (web)" in d.find_element(By.ID, "events").text)


def test_non_admin_browser_and_curl_get_no_qr_and_no_history(server, browser, emulator):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    emulator.wait_for(lambda: emulator.qr_uuid is not None)
    browser.get(f"{svc.url}/?lang=en")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Service is up" in body and "Bot is not online" in body
    assert not browser.find_elements(By.ID, "qr") and not browser.find_elements(By.ID, "events")
    for path in ("/api/bot/qr.png", "/api/bot/events", "/api/bot/stream", "/api/bot"):
        assert svc.status(path) == 401
    assert svc.status("/api/bot/qr.png", API_TOKEN) == 200


def test_demo_phone_panel_drives_the_whole_flow_in_chinese(server, browser, shoot):
    svc = server("--demo")
    sign_in(browser, svc.url, lang="zh")
    wait_for_page_state(browser, "waiting_for_scan", timeout=10)
    assert "扫描" in browser.find_element(By.ID, "panel-scan").text
    shoot(browser, "06-demo-zh-waiting-for-scan")
    mark_page(browser)

    browser.find_element(By.ID, "phone-expire").click()  # a new QR replaces the dead one
    wait_until(browser, lambda d: "第 1 次刷新" in d.find_element(By.ID, "reason").text)  # the reason in Chinese
    browser.find_element(By.ID, "phone-scan").click()
    wait_for_page_state(browser, "waiting_for_confirm")
    browser.find_element(By.ID, "phone-confirm").click()
    wait_for_page_state(browser, "logged_in")

    browser.find_element(By.ID, "phone-text").send_keys("你好，机器人")
    browser.find_element(By.ID, "phone-send").click()
    wait_until(browser, lambda d: "机器人已收到" in d.find_element(By.ID, "phone-chat").text,
               message="the bot never fetched the text")
    # A WeChat Pay notice from the phone pays an order; a forged one is rejected.
    order = api(svc, "POST", "/api/orders", {"amount": "9.90", "reference": "browser"})
    amount = browser.find_element(By.ID, "phone-amount")
    amount.clear()
    amount.send_keys("9.90")
    browser.find_element(By.ID, "phone-note").send_keys(order["code"])
    browser.find_element(By.ID, "phone-pay").click()
    wait_until(browser, lambda d: f"￥9.90 · {order['code']}" in d.find_element(By.ID, "phone-chat").text)
    assert wait_for(lambda: api(svc, "GET", f"/api/orders/{order['id']}")["status"] == "paid", timeout=10)
    browser.find_element(By.ID, "phone-forge").click()
    assert wait_for(lambda: [n for n in api(svc, "GET", "/api/payments/notices")["notices"]
                             if n["status"] == "rejected"], timeout=10)
    shoot(browser, "07-demo-zh-logged-in")
    browser.set_window_size(390, 1400)  # a phone's width: nothing may stick out sideways
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    shoot(browser, "08-demo-zh-phone-width")
    browser.set_window_size(1200, 1300)

    browser.find_element(By.ID, "phone-logout").click()
    wait_until(browser, lambda d: page_state(d) != "logged_in", timeout=1.0)
    wait_for_page_state(browser, "waiting_for_scan")  # a logout from the phone shows a fresh QR
    assert same_page(browser)


def test_page_polls_when_the_stream_is_refused(server, browser, emulator):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url, GEEKAI_STREAM_MAX_CLIENTS="0")
    assert svc.status("/api/bot/stream", API_TOKEN) == 503
    sign_in(browser, svc.url)
    wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "polling")
    wait_for_page_state(browser, "waiting_for_scan")
    mark_page(browser)
    emulator.scan()
    wait_for_page_state(browser, "waiting_for_confirm")
    assert same_page(browser)


def test_page_reconnects_after_the_server_restarts(server, browser, emulator):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "waiting_for_scan")
    mark_page(browser)
    port = svc.url.rsplit(":", 1)[1]
    assert visible(browser, "qr") and visible(browser, "qr-countdown")
    svc.stop()
    wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "offline")
    # The page cannot vouch for the state any more: no green line, no QR that may be dead, no countdown.
    line = browser.find_element(By.ID, "service-line").text
    assert re.fullmatch(r"✖ Connection to the server lost since \d\d:\d\d: what follows is the state before", line), line
    assert not visible(browser, "qr") and not visible(browser, "qr-countdown")
    again = Server(svc.instance, "--port", port, GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    try:
        wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "live",
                   timeout=10)
        wait_for_page_state(browser, "waiting_for_scan", timeout=10)
        assert browser.find_element(By.ID, "service-line").text == "✔ Service is up"
        wait_until(browser, lambda d: visible(d, "qr") and visible(d, "qr-countdown"))
        emulator.scan()
        wait_for_page_state(browser, "waiting_for_confirm")
        assert same_page(browser)
    finally:
        again.stop()


def test_the_csp_blocks_nothing_the_pages_use_and_no_other_site_can_frame_them(server, browser):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    svc = server("--demo")
    browser.get_log("browser")  # drop what earlier tests left
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "waiting_for_scan", timeout=15)
    # status.js ran (the live stream is up) and style.css applied (the phone panel is laid out).
    wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "live")
    browser.find_element(By.ID, "phone-scan").click()  # the simulated phone scans
    wait_for_page_state(browser, "waiting_for_confirm")
    for path in ("/payments", "/orders", "/deliveries", "/payments?since=2024-01-01"):
        browser.get(svc.url + path)
        assert browser.find_elements(By.TAG_NAME, "table") or browser.find_elements(By.TAG_NAME, "form")
    refused = [entry["message"] for entry in browser.get_log("browser")
               if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]]
    assert refused == []

    class Framer(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f'<html><body><iframe id="f" src="{svc.url}/"></iframe></body></html>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    other_site = ThreadingHTTPServer(("localhost", 0), Framer)  # another origin than 127.0.0.1
    threading.Thread(target=other_site.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        browser.get(f"http://localhost:{other_site.server_address[1]}/")

        def refusal(driver):
            return [e["message"] for e in driver.get_log("browser") if "frame-ancestors" in e["message"]]
        assert wait_until(browser, refusal, message="the status page was framed by another site")
        browser.switch_to.frame(browser.find_element(By.ID, "f"))
        assert not browser.find_elements(By.ID, "bot")  # nothing of the status page inside
        browser.switch_to.default_content()
    finally:
        other_site.shutdown()
        other_site.server_close()


def test_ilink_qr_on_the_page_scans_as_what_ilink_sent_and_the_code_is_entered_on_the_page(server, browser, ilink,
                                                                                           shoot):
    from conftest import decode_qr, wait_for

    svc = server(GEEKAI_BOT_BACKEND="ilink", GEEKAI_ILINK_BASE_URL=ilink.base_url)
    sign_in(browser, svc.url)
    wait_for_page_state(browser, "waiting_for_scan")
    wait_until(browser, lambda d: d.execute_script("return document.getElementById('qr').naturalWidth") > 0,
               message="the QR image never loaded")
    qr = browser.find_element(By.ID, "qr")
    assert qr.get_attribute("width") == qr.get_attribute("height") == "240"  # where web WeChat's QR is shown
    # What a phone pointed at the screen reads: the QR as displayed, from a screenshot of it.
    assert decode_qr(qr.screenshot_as_png) == ilink.qrcode_content
    shoot(browser, "10-ilink-waiting-for-scan")
    mark_page(browser)

    ilink.scan(code="4821")
    wait_until(browser, lambda d: visible(d, "verify-form"), message="no code input on the page")
    assert page_state(browser) == "waiting_for_confirm" and not visible(browser, "verify-wrong")
    assert "Your phone shows a number" in browser.find_element(By.ID, "panel-confirm").text
    field = browser.find_element(By.ID, "verify-code")
    field.send_keys("1111")
    browser.find_element(By.ID, "verify-send").click()
    wait_until(browser, lambda d: visible(d, "verify-wrong"), message="a wrong code was not said")
    assert "did not match" in browser.find_element(By.ID, "verify-wrong").text
    assert browser.find_element(By.ID, "verify-code").get_attribute("value") == ""
    shoot(browser, "11-ilink-wrong-code")
    browser.find_element(By.ID, "verify-code").send_keys("4821")
    browser.find_element(By.ID, "verify-send").click()
    wait_until(browser, lambda d: not visible(d, "verify-form") and visible(d, "confirm-steps"))
    assert wait_for(lambda: ilink.state == "scanned")
    ilink.confirm()
    wait_for_page_state(browser, "logged_in")
    assert browser.find_element(By.ID, "nickname").text == ilink.bot_id
    assert same_page(browser)


def test_ilink_demo_phone_in_chinese(server, browser, shoot):
    svc = server("--demo", "ilink")
    sign_in(browser, svc.url, lang="zh")
    wait_for_page_state(browser, "waiting_for_scan", timeout=10)
    assert "iLink" in browser.find_element(By.ID, "phone").text
    browser.find_element(By.ID, "phone-scan_code").click()
    wait_until(browser, lambda d: visible(d, "phone-code"), message="the phone shows no code")
    code = re.search(r"\d{4}", browser.find_element(By.ID, "phone-code").text).group(0)
    wait_until(browser, lambda d: visible(d, "verify-form"))
    assert "手机上显示了一个数字" in browser.find_element(By.ID, "panel-confirm").text
    browser.find_element(By.ID, "verify-code").send_keys(code)
    browser.find_element(By.ID, "verify-send").click()
    wait_until(browser, lambda d: visible(d, "confirm-steps"))
    browser.find_element(By.ID, "phone-confirm").click()
    wait_for_page_state(browser, "logged_in")
    browser.find_element(By.ID, "phone-text").send_keys("你好，iLink")
    browser.find_element(By.ID, "phone-send").click()
    wait_until(browser, lambda d: "机器人已收到" in d.find_element(By.ID, "phone-chat").text,
               message="the bot never fetched the text")
    shoot(browser, "12-demo-ilink-zh-logged-in")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_fits_a_phone_without_sideways_scrolling(server, browser, lang):
    """360 and 390 px wide, with the long values that used to push pages sideways: 28-digit
    transaction ids, long notes and reasons, callback URLs and their errors."""
    svc = server("--demo", GEEKAI_PAYMENT_CALLBACK_URL="",
                 GEEKAI_ALERT_WEBHOOK_URL="http://127.0.0.1:9/a-rather-long-webhook-path/that/does/not/answer?key=x")
    sign_in(browser, svc.url, lang=lang)
    wait_for_page_state(browser, "waiting_for_scan", timeout=15)
    browser.find_element(By.ID, "phone-confirm").click()
    wait_for_page_state(browser, "logged_in", timeout=15)
    order = api(svc, "POST", "/api/orders", {"amount": "123456.78", "reference": "r" * 60})
    for note in (order["code"], "备注" * 40, "x" * 100):
        browser.find_element(By.ID, "phone-note").clear()
        browser.find_element(By.ID, "phone-note").send_keys(note)
        browser.find_element(By.ID, "phone-pay").click()
    browser.find_element(By.ID, "phone-forge").click()
    assert wait_for(lambda: len(api(svc, "GET", "/api/payments/notices")["notices"]) >= 4, timeout=15)
    browser.find_element(By.ID, "phone-logout").click()  # an alert incident and its delivery attempts
    wait_for_page_state(browser, "waiting_for_scan", timeout=15)
    overflowing = []
    for width in (360, 390):
        browser.set_window_size(width, 1400)
        for path in ("/", "/payments", "/payments?status=rejected", "/orders", "/deliveries"):
            browser.get(f"{svc.url}{path}")
            wide = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth, Array.from("
                "document.querySelectorAll('body *')).filter(function (e) { var r = e.getBoundingClientRect();"
                " return r.right > window.innerWidth + 1; }).slice(0, 3).map(function (e) {"
                " return e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className; })]")
            if wide[0] > wide[1]:
                overflowing.append((width, path, wide))
    browser.set_window_size(1200, 1300)
    assert overflowing == []
