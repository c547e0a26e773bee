"""Every reason a person reads exists in Chinese and English (geekai/web/reasons.py), old rows too."""
from __future__ import annotations

import os
import re

import pytest

from conftest import record, sign_in
from geekai.web import i18n, reasons

HERE = os.path.dirname(__file__)
SAMPLE = {"first_reason": "WeChat ended the session", "now_reason": "scan the QR with WeChat",
          "last_reason": "watchdog: the message listener thread died",
          "note_reason": "the saved session unreadable (EOFError: truncated), so it was set aside",
          "actor": "admin (web)", "command": "login", "kind": "ignored", "problem": "unreadable (EOFError: x)"}


def sample(english: str) -> str:
    """The pattern with every parameter filled in."""
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "7"), english)


@pytest.mark.parametrize("code, english, chinese", reasons.CATALOGUE, ids=[c[0] for c in reasons.CATALOGUE])
def test_every_reason_code_renders_in_both_languages(code, english, chinese):
    text = sample(english)
    found = reasons.describe(text)
    assert found is not None and found.code == code, f"{code} is shadowed by {found and found.code}"
    assert set(re.findall(r"\{(\w+)\}", chinese)) == set(re.findall(r"\{(\w+)\}", english)), code
    assert reasons.render(text, "en") == text
    shown = reasons.render(text, "zh")
    assert "{" not in shown and re.search(r"[\u4e00-\u9fff]", shown), shown
    # Nothing English is left but what the parameters carry (paths, errors, names).
    leftover = re.sub(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef“”]", "", chinese)
    assert not re.search(r"\b(the|and|with|from|for|not|was)\b", leftover), chinese


def test_codes_are_unique():
    codes = [code for code, _, _ in reasons.CATALOGUE]
    assert len(codes) == len(set(codes))


def real_reasons() -> list[str]:
    with open(os.path.join(HERE, "fixtures", "reasons.txt"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("text", real_reasons())
def test_every_reason_the_service_writes_has_a_code(text):
    """What the suite's flows wrote (bot history, payment notices, alert incidents), as old rows hold it."""
    assert reasons.code_of(text) not in ("", "other"), text
    assert re.search(r"[\u4e00-\u9fff]", reasons.render(text, "zh")), text


def test_actors_and_incident_kinds_have_both_languages():
    for table in (reasons.ACTORS, reasons.INCIDENT_KINDS, reasons.WORDS):
        for name, forms in table.items():
            assert set(forms) == {"zh", "en"} and all(forms.values()), name


def test_an_unknown_reason_stays_as_it_came():
    assert reasons.code_of("something new and strange") == "other"
    assert reasons.render("something new and strange", "zh") == "something new and strange"
    assert reasons.code_of("") == "" and reasons.render("", "zh") == ""


def test_the_api_carries_code_parameters_and_the_chinese_form(app, client, auth):
    record(app, "waiting_for_scan", "retrying", "WeChat answered HTTP 503 for /jslogin", actor="bot")
    state = client.get("/api/bot", headers=auth).get_json()
    assert state["reason"] == "WeChat answered HTTP 503 for /jslogin"  # English stays, for scripts
    assert state["reason_code"] == "wechat_http"
    assert state["reason_params"] == {"status": "503", "path": "/jslogin"}
    assert state["reason_zh"] == "微信服务器对 /jslogin 返回了 HTTP 503"
    event = client.get("/api/bot/events", headers=auth).get_json()["events"][0]
    assert event["reason_code"] == "wechat_http" and event["actor_zh"] == "机器人"


def test_the_page_in_chinese_has_chinese_reasons_actors_and_states(app, client):
    record(app, "logged_in", "needs_login", "logged out by admin", actor="admin (web)")
    sign_in(client)
    zh = client.get("/?lang=zh").get_data(as_text=True)
    assert "管理员退出了微信登录" in zh and "管理员（网页）" in zh and "logged out by admin" not in zh
    assert f">{i18n.TEXT['needs_login']['zh']}</span>" in zh  # the history's states by name, not code
    en = client.get("/?lang=en").get_data(as_text=True)
    assert "logged out by admin" in en and "admin (web)" in en
