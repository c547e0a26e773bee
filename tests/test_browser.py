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

from conftest import ADMIN_PASSWORD, API_TOKEN, ROOT_DIR

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
    assert "waiting_for_confirm → logged_in" in history
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
    browser.find_element(By.CSS_SELECTOR, 'button[data-command="stop"]').click()
    wait_for_page_state(browser, "stopped")
    assert "stopped by admin (web)" in browser.find_element(By.ID, "events").text
    browser.find_element(By.CSS_SELECTOR, 'button[data-command="start"]').click()
    wait_for_page_state(browser, "waiting_for_scan")
    browser.find_element(By.CSS_SELECTOR, 'button[data-command="logout"]').click()
    wait_for_page_state(browser, "needs_login")
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
    wait_until(browser, lambda d: "refresh 1" in d.find_element(By.ID, "reason").text)
    browser.find_element(By.ID, "phone-scan").click()
    wait_for_page_state(browser, "waiting_for_confirm")
    browser.find_element(By.ID, "phone-confirm").click()
    wait_for_page_state(browser, "logged_in")

    browser.find_element(By.ID, "phone-text").send_keys("你好，机器人")
    browser.find_element(By.ID, "phone-send").click()
    wait_until(browser, lambda d: "机器人已收到" in d.find_element(By.ID, "phone-chat").text,
               message="the bot never fetched the text")
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
    svc.stop()
    wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "offline")
    again = Server(svc.instance, "--port", port, GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    try:
        wait_until(browser, lambda d: d.find_element(By.ID, "live-mode").get_attribute("data-mode") == "live",
                   timeout=10)
        wait_for_page_state(browser, "waiting_for_scan", timeout=10)
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
    threading.Thread(target=other_site.serve_forever, daemon=True).start()
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
