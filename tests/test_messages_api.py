"""POST /api/messages and the feed through the test client: storing, idempotency, bad input, paging."""
from __future__ import annotations

import pytest

from conftest import csrf_token, sign_in
from message_helpers import feed, message, post, rows


@pytest.fixture
def small_app(make_app):
    return make_app(MESSAGE_MAX_CHARS=20)


def test_a_message_is_stored_queued_and_answered_202(client, auth, app):
    answer = post(client, auth, to="张三", text="你好，订单已发货")
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["status"] == "queued" and isinstance(body["id"], int)
    assert answer.headers["Location"].endswith(f"/api/messages/{body['id']}")
    stored = message(client, auth, body["id"])
    assert (stored["direction"], stored["contact"], stored["text"], stored["attempts"]) == \
        ("out", "张三", "你好，订单已发货", 0)
    assert stored["sent_at"] is None and stored["error"] == "" and stored["next_attempt_at"]
    assert rows(app) == 1


def test_the_same_key_twice_returns_the_first_message_and_stores_one(client, auth, app):
    first = post(client, auth, key="order-42-paid")
    again = post(client, auth, key="order-42-paid")
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert rows(app) == 1
    other = post(client, auth, key="order-43-paid")
    assert other.status_code == 202 and other.get_json()["id"] != first.get_json()["id"]
    without_key = [post(client, auth).get_json()["id"] for _ in range(2)]
    assert len(set(without_key)) == 2  # no key: every post is a message of its own


def test_a_key_reused_for_another_text_is_refused(client, auth, app):
    first = post(client, auth, text="A", key="k-1").get_json()
    clash = post(client, auth, text="B", key="k-1")
    assert clash.status_code == 409 and clash.get_json()["field"] == "key"
    assert f"message {first['id']}" in clash.get_json()["error"]
    assert rows(app) == 1 and message(client, auth, first["id"])["text"] == "A"


LONG = "长" * 21


@pytest.mark.parametrize("body, field, words", [
    ({"text": "hi"}, "to", "to is required"),
    ({"to": 42, "text": "hi"}, "to", "to must be a string"),
    ({"to": ["张三"], "text": "hi"}, "to", "to must be a string"),
    ({"to": "   ", "text": "hi"}, "to", "to must not be empty"),
    ({"to": "x" * 201, "text": "hi"}, "to", "over the limit of 200"),
    ({"to": "张三"}, "text", "text is required"),
    ({"to": "张三", "text": None}, "text", "text is required"),
    ({"to": "张三", "text": 12}, "text", "text must be a string"),
    ({"to": "张三", "text": ""}, "text", "text must not be empty"),
    ({"to": "张三", "text": " \n "}, "text", "text must not be empty"),
    ({"to": "张三", "text": LONG}, "text", "21 characters, over the limit of 20 (MESSAGE_MAX_CHARS)"),
    ({"to": "张三", "text": "a\x00b"}, "text", "NUL"),
    ({"to": "张三", "text": "hi", "key": "k" * 201}, "key", "over the limit of 200"),
    ({"to": "张三", "text": "hi", "key": 7}, "key", "key must be a string"),
    ({"to": "张三", "text": "hi", "key": ""}, "key", "key must not be empty"),
    (["张三", "hi"], "body", "send a JSON object"),
    ("hello", "body", "send a JSON object"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(small_app, auth, body, field, words):
    client = small_app.test_client()
    answer = client.post("/api/messages", json=body, headers=auth)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["field"] == field and words in answer.get_json()["error"]
    assert rows(small_app) == 0 and rows(small_app, "outbox") == 0


@pytest.mark.parametrize("data, words, field", [
    (b"", "the body is empty", "body"),
    (b"to=zhang&text=hi", "not valid JSON", "body"),
    (b'{"to": "\xe5\xbc", "text": "hi"}', "not valid JSON", "body"),  # cut in the middle of a character
    (b'{"to": "a", "text": ', "not valid JSON", "body"),
    (b'{"to": "a", "text": "hi", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested", "body"),
    (b'{"to": "a", "text": "\\ud800"}', "lone surrogate", "text"),  # no database can store it
    (b'{"to": "\\udfff", "text": "hi"}', "lone surrogate", "to"),
])
def test_a_body_that_is_not_json_is_400(client, auth, app, data, words, field):
    answer = client.post("/api/messages", data=data, headers=auth | {"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.get_json()["field"] == field
    assert words in answer.get_json()["error"]
    assert rows(app) == 0


def test_text_at_the_limit_is_taken(small_app, auth):
    assert post(small_app.test_client(), auth, text="长" * 20).status_code == 202


def test_admin_only_and_a_browser_needs_the_csrf_token(client, auth, app):
    assert client.post("/api/messages", json={"to": "张三", "text": "hi"}).status_code == 401
    assert client.get("/api/messages").status_code == 401
    sign_in(client)
    assert client.post("/api/messages", json={"to": "张三", "text": "hi"}).status_code == 400  # no CSRF token
    assert rows(app) == 0
    token = csrf_token(client, "/")
    answer = client.post("/api/messages", json={"to": "张三", "text": "hi"}, headers={"X-CSRFToken": token})
    assert answer.status_code == 202


def test_an_unknown_message_is_404(client, auth):
    answer = client.get("/api/messages/999", headers=auth)
    assert answer.status_code == 404 and "no message 999" in answer.get_json()["error"]


def test_a_message_id_past_64_bits_is_400_naming_it(client, auth):
    answer = client.get(f"/api/messages/{2**64}", headers=auth)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "message_id"


def test_the_feed_pages_oldest_first_after_the_cursor(client, auth):
    ids = [post(client, auth, text=f"m{n}").get_json()["id"] for n in range(5)]
    page = client.get("/api/messages", query_string={"limit": 2}, headers=auth).get_json()
    assert [m["text"] for m in page["messages"]] == ["m0", "m1"]
    assert page["has_more"] and page["next_after_id"] == ids[1]
    rest = client.get("/api/messages", query_string={"after_id": page["next_after_id"]}, headers=auth).get_json()
    assert [m["text"] for m in rest["messages"]] == ["m2", "m3", "m4"] and not rest["has_more"]
    idle = client.get("/api/messages", query_string={"after_id": rest["next_after_id"]}, headers=auth).get_json()
    assert idle["messages"] == [] and idle["next_after_id"] == ids[-1]  # a poller keeps its cursor
    newest = client.get("/api/messages", query_string={"order": "newest", "limit": 2}, headers=auth).get_json()
    assert [m["text"] for m in newest["messages"]] == ["m4", "m3"] and newest["next_before_id"] == ids[3]
    older = feed(client, auth, order="newest", before_id=newest["next_before_id"])
    assert [m["text"] for m in older] == ["m2", "m1", "m0"]


def test_the_feed_filters_by_direction_status_and_contact(client, auth, app):
    from geekai.bot.backend import IncomingMessage
    from geekai.messages.feed import record_incoming

    record_incoming(app, IncomingMessage(id="1001", type="Text", text="在吗", sender="@x", sender_name="李四",
                                         contact_id="李四"))
    post(client, auth, to="李四", text="在")
    post(client, auth, to="张三", text="hello")
    assert [m["text"] for m in feed(client, auth, direction="in")] == ["在吗"]
    assert [m["text"] for m in feed(client, auth, direction="out")] == ["在", "hello"]
    assert [m["text"] for m in feed(client, auth, contact="李四")] == ["在吗", "在"]
    assert [m["text"] for m in feed(client, auth, status="queued", contact="张三")] == ["hello"]
    incoming = feed(client, auth, direction="in")[0]
    assert (incoming["status"], incoming["contact"], incoming["contact_name"]) == ("received", "李四", "李四")
    assert feed(client, auth, direction="out")[0]["contact_name"] == "李四"  # from the last message received


@pytest.mark.parametrize("query, name", [
    ({"after_id": "x"}, "after_id"), ({"after_id": "-1"}, "after_id"), ({"before_id": "0"}, "before_id"),
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"direction": "sideways"}, "direction"), ({"status": "lost"}, "status"), ({"order": "random"}, "order"),
    ({"after_id": "9" * 25}, "after_id"), ({"before_id": str(2**63)}, "before_id"), ({"limit": "9" * 25}, "limit"),
    ({"contact": "a\x00b"}, "contact"), ({"contact": "x" * 201}, "contact"),
])
def test_bad_feed_parameters_are_400_naming_them(client, auth, query, name):
    answer = client.get("/api/messages", query_string=query, headers=auth)
    assert answer.status_code == 400 and answer.get_json()["field"] == name
    assert name in answer.get_json()["error"]


def test_a_redelivered_message_is_stored_once(app):
    from geekai.bot.backend import IncomingMessage
    from geekai.messages.feed import record_incoming

    incoming = IncomingMessage(id="555", type="Text", text="hi", sender="@x", sender_name="张三", contact_id="张三")
    first = record_incoming(app, incoming)
    assert first is not None and record_incoming(app, incoming) is None
    assert rows(app) == 1


def test_a_callback_url_without_a_secret_stops_start_up(make_app):
    from geekai.config import ConfigError

    with pytest.raises(ConfigError, match="MESSAGE_CALLBACK_SECRET"):
        make_app(MESSAGE_CALLBACK_URL="http://127.0.0.1:9/hook")


@pytest.mark.parametrize("key, value", [("MESSAGE_MAX_CHARS", 0), ("MESSAGE_MAX_CHARS", "many"),
                                        ("MESSAGE_RETENTION_DAYS", -1), ("MESSAGE_MAX_ATTEMPTS", 0),
                                        ("MESSAGE_CALLBACK_URL", "ftp://x")])
def test_bad_message_settings_name_the_key(make_app, key, value):
    from geekai.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        make_app(**{key: value})


def test_an_insert_waits_for_an_earlier_one_to_commit_so_a_cursor_skips_nothing(app):
    """A row with a smaller id must never commit after a reader saw a bigger one."""
    import threading

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from geekai.bot.backend import IncomingMessage
    from geekai.db import db
    from geekai.messages.feed import queue_outgoing, record_incoming
    from geekai.messages.models import Message

    inserted, release, ids = threading.Event(), threading.Event(), {}

    def pause_before_commit(session):
        if threading.current_thread().name == "first":
            inserted.set()
            release.wait(10)

    def first():
        incoming = IncomingMessage(id="1", type="Text", text="first", sender="@x", sender_name="张三", contact_id="张三")
        ids["first"] = record_incoming(app, incoming)

    def second():
        with app.app_context():
            ids["second"] = queue_outgoing("张三", "second", None)[0].id

    event.listen(Session, "before_commit", pause_before_commit)
    try:
        writer = threading.Thread(target=first, name="first")
        writer.start()
        assert inserted.wait(10)
        follower = threading.Thread(target=second, name="second")
        follower.start()
        follower.join(0.5)
        assert follower.is_alive() and "second" not in ids  # it waits for the first to commit
        with app.app_context():
            assert db.session.execute(db.select(Message.text)).scalars().all() == []  # nothing visible yet
    finally:
        release.set()
        writer.join(10)
        follower.join(10)
        event.remove(Session, "before_commit", pause_before_commit)
    assert ids["first"] < ids["second"]
