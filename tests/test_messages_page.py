"""The messages card of the status page (admin only, escaped, filtered, failures marked) and /metrics."""
from __future__ import annotations

import re

import pytest

from conftest import sign_in
from geekai.bot.backend import IncomingMessage
from geekai.db import db
from geekai.messages.feed import record_incoming
from geekai.messages.models import Message
from message_helpers import post

SCRIPT = "<script>alert('x')</script> & <b>bold</b>"


def fail(app, message_id: int, reason: str) -> None:
    with app.app_context():
        db.session.execute(db.update(Message).where(Message.id == message_id).values(status="failed", error=reason))
        db.session.commit()


@pytest.fixture
def with_messages(app, client, auth):
    record_incoming(app, IncomingMessage(id="1", type="Text", text=SCRIPT, sender="@a", sender_name="<i>李四</i>",
                                         contact_id="李四"))
    queued = post(client, auth, to="张三", text="queued one").get_json()["id"]
    failed = post(client, auth, to="王五", text="failed one").get_json()["id"]
    fail(app, failed, "unknown contact '王五': no friend <has> this name")
    return queued, failed


def card(html: str) -> str:
    match = re.search(r'<section class="card" id="messages".*?</section>', html, re.S)
    assert match, "no messages card"
    return match.group(0)


def test_the_card_shows_messages_escaped_with_failures_marked(client, with_messages):
    sign_in(client)
    html = card(client.get("/?lang=en").get_data(as_text=True))
    assert "<script>alert" not in html and "<b>bold</b>" not in html and "<i>李四</i>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    failed = re.search(r'<tr class="message message-failed"[^>]*>.*?</tr>', html, re.S).group(0)
    assert "failed one" in failed and "no friend &lt;has&gt; this name" in failed
    assert 'class="message message-queued"' in html and 'class="message message-received"' in html
    assert "Messages" in html and "Received" in html


def test_the_filter_shows_only_what_was_chosen(client, with_messages):
    sign_in(client)
    failed = card(client.get("/?lang=en&messages=failed").get_data(as_text=True))
    assert "failed one" in failed and "queued one" not in failed and "alert" not in failed
    incoming = card(client.get("/?messages=in").get_data(as_text=True))
    assert "alert" in incoming and "queued one" not in incoming
    assert "queued one" in card(client.get("/?messages=nonsense").get_data(as_text=True))  # all


def test_the_card_speaks_chinese(client, with_messages):
    sign_in(client)
    html = card(client.get("/?lang=zh").get_data(as_text=True))
    for text in ("消息", "收到的", "发送失败的", "排队中", "联系人"):
        assert text in html


def test_why_a_message_failed_is_shown_in_the_page_language(app, client, auth):
    failed = post(client, auth, to="赵六", text="hi").get_json()["id"]
    reason = ("unknown contact '赵六': no friend, group or official account of GeekAI测试号 has this remark name "
              "or nickname (use the `contact` of a received message)")
    fail(app, failed, reason)
    sign_in(client)
    assert "未知联系人 &#39;赵六&#39;：GeekAI测试号 的好友" in card(client.get("/?lang=zh").get_data(as_text=True))
    assert "unknown contact &#39;赵六&#39;: no friend" in card(client.get("/?lang=en").get_data(as_text=True))
    shown = client.get(f"/api/messages/{failed}", headers=auth).get_json()
    assert shown["error"] == reason and shown["error_code"] == "send_unknown_contact"  # English stays, for scripts
    assert shown["error_zh"].startswith("未知联系人 '赵六'：GeekAI测试号 的好友")
    gave_up = post(client, auth, to="张三", text="hi").get_json()["id"]
    fail(app, gave_up, "gave up after 10 attempts: iLink answered HTTP 503 for sendmessage; the message was not sent")
    assert message_error_zh(client, auth, gave_up) == "尝试 10 次后放弃：iLink 对 sendmessage 返回了 HTTP 503；消息未发出"


def message_error_zh(client, auth, message_id) -> str:
    return client.get(f"/api/messages/{message_id}", headers=auth).get_json()["error_zh"]


def test_visitors_see_no_messages(client, with_messages):
    html = client.get("/").get_data(as_text=True)
    assert 'id="messages"' not in html and "queued one" not in html and "messages.js" not in html


def test_metrics_count_messages_by_direction_and_status(client, with_messages):
    text = client.get("/metrics").get_data(as_text=True)
    for line in ('geekai_messages{direction="in",status="received"} 1.0',
                 'geekai_messages{direction="out",status="queued"} 1.0',
                 'geekai_messages{direction="out",status="failed"} 1.0',
                 'geekai_messages{direction="out",status="sent"} 0.0'):
        assert line in text
    age = float(re.search(r"^geekai_messages_queued_oldest_seconds (\S+)$", text, re.M).group(1))
    assert age >= 0
