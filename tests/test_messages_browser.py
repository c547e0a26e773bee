"""The messages card in headless Chromium against `python app.py`: live, escaped, filtered, failures marked."""
from __future__ import annotations

import json
import urllib.request

from conftest import API_TOKEN
from test_browser import (By, browser, chrome, pytestmark, server, sign_in, wait_until,  # noqa: F401 (fixtures)
                          wait_for_page_state)

HOSTILE = "<img src=x onerror=\"window.__hacked=1\"> & <b>粗体</b>"


def post(svc, to: str, text: str) -> dict:
    request = urllib.request.Request(svc.url + "/api/messages", method="POST",
                                     data=json.dumps({"to": to, "text": text}).encode(),
                                     headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def rows(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#message-rows tbody tr.message")


def test_messages_arrive_live_escaped_and_failures_stand_out(server, browser, emulator):
    svc = server(GEEKAI_WECHAT_BASE_URL=emulator.base_url, GEEKAI_MESSAGE_SEND_INTERVAL_SECONDS="0.2")
    sign_in(browser, svc.url, lang="en")
    wait_for_page_state(browser, "waiting_for_scan")
    emulator.scan()
    emulator.confirm()
    wait_for_page_state(browser, "logged_in")
    assert browser.find_element(By.CSS_SELECTOR, "#message-rows tbody").text == "No messages yet"

    emulator.send_text(HOSTILE)
    wait_until(browser, lambda d: HOSTILE in d.find_element(By.ID, "message-rows").text, timeout=10,
               message="the received message never showed")
    assert browser.execute_script("return window.__hacked") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#message-rows img, #message-rows b")
    post(svc, "赵六", "to nobody")
    post(svc, "张三", "to 张三")
    wait_until(browser, lambda d: len(rows(d)) == 3 and d.find_elements(By.CSS_SELECTOR, "tr.message-failed")
               and "sent" in rows(d)[0].text, timeout=10, message="the sent and failed messages never showed")
    failed = browser.find_element(By.CSS_SELECTOR, "tr.message-failed")
    assert "to nobody" in failed.text and "unknown contact '赵六'" in failed.text
    colour = failed.find_element(By.TAG_NAME, "td").value_of_css_property("background-color")
    assert colour != browser.find_element(By.CSS_SELECTOR, "tr.message-sent td").value_of_css_property("background-color")

    browser.find_element(By.CSS_SELECTOR, "#message-filter input[value=failed]").click()
    wait_until(browser, lambda d: len(rows(d)) == 1 and "to nobody" in rows(d)[0].text, timeout=10)
    assert "messages=failed" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "#message-filter input[value=in]").click()
    wait_until(browser, lambda d: len(rows(d)) == 1 and HOSTILE in rows(d)[0].text, timeout=10)

    # A phone's width: a long contact id without spaces (iLink's look like this) and a long reason
    # wrap inside the card instead of pushing the page sideways.
    long_id = "o9cq80" + "f3a1c2" * 6 + "@im.wechat"
    post(svc, long_id, "x" * 300)
    browser.find_element(By.CSS_SELECTOR, "#message-filter input[value=all]").click()
    wait_until(browser, lambda d: long_id in d.find_element(By.ID, "message-rows").text, timeout=10)
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.message-failed")) == 2, timeout=10)
    browser.set_window_size(390, 1400)
    for lang in ("en", "zh"):
        browser.get(f"{svc.url}/?lang={lang}")
        wait_until(browser, lambda d: long_id in d.find_element(By.ID, "message-rows").text, timeout=10)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), lang
    browser.set_window_size(1200, 1300)

    browser.get(f"{svc.url}/?lang=zh&messages=failed")  # the filter also works as a plain page load
    wait_until(browser, lambda d: d.find_elements(By.ID, "messages"))
    card = browser.find_element(By.ID, "messages").text
    assert "消息" in card and "失败" in card and "to nobody" in card and "to 张三" not in card
    assert "未知联系人 '赵六'" in card and "unknown contact" not in card  # the reason in the page's language
