"""Secrets out of error texts and log lines (geekai/redaction.py)."""
from __future__ import annotations

import logging

import pytest

from geekai.redaction import RedactingFilter, redact, redact_text

WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0123abcd-SECRET-KEY"


@pytest.mark.parametrize("text, secret", [
    ("HTTPSConnectionPool(host='qyapi.weixin.qq.com', port=443): Max retries exceeded with url: "
     "/cgi-bin/webhook/send?key=0123abcd-SECRET-KEY (Caused by ...)", "0123abcd-SECRET-KEY"),
    ("Invalid URL 'https://oapi.dingtalk.com/robot/send?access_token=TOKEN123456&timestamp=1&sign=SIGN987654'",
     "TOKEN123456"),
    ("POST https://open.feishu.cn/open-apis/bot/v2/hook/5f3c-hook-token failed", "5f3c-hook-token"),
    ("SMTPAuthenticationError for smtp://ops:hunter2secret@mail.example.com:587", "hunter2secret"),
    ("GET /cgi-bin/mmwebwx-bin/synccheck?r=1&skey=@crypt_abc123def&sid=SIDVALUE99&uin=1 timed out", "SIDVALUE99"),
])
def test_credentials_in_error_texts_are_masked(text, secret):
    cleaned = redact_text(text)
    assert secret not in cleaned and "***" in cleaned


def test_the_targets_own_secret_is_masked_wherever_the_text_quotes_it():
    text = "the robot said: invalid key '0123abcd-SECRET-KEY' (errcode 93000)"
    assert "SECRET" not in redact_text(text, WECOM)
    assert redact_text("HTTP 500: server down", WECOM) == "HTTP 500: server down"  # nothing else changes


def test_plain_words_and_harmless_parameters_are_left_alone():
    text = "HTTP 404 for /send?msgtype=text&page=2: not found"
    assert redact_text(text) == text
    assert redact(WECOM) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"


def test_log_records_and_their_tracebacks_are_masked(caplog):
    logger = logging.getLogger("geekai.test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise ValueError(f"bad answer from {WECOM}")
    except ValueError:
        logger.exception("sending to %s failed", WECOM)
    assert "SECRET" not in caplog.text and "key=***" in caplog.text
