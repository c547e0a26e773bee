"""GET /api/bot/stream: server-sent events from the database, capped, resumable, admin only."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from conftest import log_in_by_scan, sign_in, wait_for_state
from geekai.web import stream


class Reader:
    """Parses a streamed test response into (event, id, data) messages."""

    def __init__(self, response):
        self.response = response
        self.chunks = iter(response.response)
        self.buffer = ""

    def next(self) -> dict:
        while "\n\n" not in self.buffer:
            self.buffer += next(self.chunks).decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields and fields.get("event") == "state":
            fields["data"] = json.loads(fields["data"])
        return fields

    def until_state(self, state: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next()
            if message.get("event") == "state" and message["data"]["state"]["state"] == state:
                return message
        raise AssertionError(f"no {state} message within {timeout} s")

    def next_state(self) -> dict:
        """The next `state` message, pings skipped."""
        while (message := self.next()).get("event") != "state":
            pass
        return message

    def close(self):
        self.response.close()


@pytest.fixture(autouse=True)
def quick_pings(monkeypatch):
    # Readers wait for messages; regular pings let them give up in time instead of hanging.
    monkeypatch.setattr(stream, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(stream, "LIVENESS_SECONDS", 0.05)


def open_stream(client, headers=None, **kwargs) -> Reader:
    response = client.get("/api/bot/stream", headers=headers or {}, buffered=False, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    return Reader(response)


def test_stream_refuses_anonymous_with_401(client):
    response = client.get("/api/bot/stream")
    assert response.status_code == 401
    assert response.mimetype == "application/json"


def test_stream_opens_with_retry_and_a_snapshot(client, auth):
    reader = open_stream(client, auth)
    assert reader.next() == {"retry": str(stream.RETRY_MILLISECONDS)}
    first = reader.next()
    assert first["event"] == "state"
    assert first["data"]["state"]["state"] == "stopped"
    assert first["data"]["reset"] is True
    assert set(first["data"]["stats"]) == {"24h", "7d"}
    reader.close()


def test_admin_session_may_stream(client):
    sign_in(client)
    reader = open_stream(client)
    reader.next()
    assert reader.next()["event"] == "state"
    reader.close()


def test_quiet_stream_sends_pings(client, auth):
    reader = open_stream(client, auth)
    reader.next(), reader.next()
    assert reader.next()["event"] == "ping"
    reader.close()


def test_each_change_is_a_message_and_a_new_qr_arrives_within_200_ms(bot_app, run_bot, emulator, auth):
    client = bot_app.test_client()
    reader = open_stream(client, auth)
    run_bot(bot_app)
    message = reader.until_state("waiting_for_scan")
    produced = datetime.fromisoformat(message["data"]["state"]["since"].replace("Z", "+00:00"))
    assert (datetime.now(timezone.utc) - produced).total_seconds() < 0.2
    assert int(message["id"]) == message["data"]["events"][0]["id"]
    assert client.get("/api/bot/qr.png", headers=auth).data.startswith(b"\x89PNG")
    emulator.scan()
    reader.until_state("waiting_for_confirm")
    emulator.confirm()
    online = reader.until_state("logged_in")
    assert online["data"]["state"]["account"] == emulator.nickname
    assert online["data"]["stats"]["24h"]["logins"] == 1
    emulator.logout()
    began = time.monotonic()
    left = reader.next_state()
    assert left["data"]["state"]["state"] != "logged_in"
    assert time.monotonic() - began < 1.0
    reader.close()


def test_reconnect_with_last_event_id_gets_only_what_it_missed(bot_app, run_bot, emulator, auth):
    client = bot_app.test_client()
    run_bot(bot_app)
    log_in_by_scan(client, auth, emulator)
    newest = client.get("/api/bot/events?limit=1", headers=auth).get_json()["events"][0]["id"]
    client.post("/api/bot/stop", headers=auth)
    wait_for_state(client, auth, "stopped")
    reader = open_stream(client, {**auth, "Last-Event-ID": str(newest)})
    reader.next()
    message = reader.next()
    assert message["data"]["reset"] is False
    assert [e["to"] for e in message["data"]["events"]] == ["stopped"]
    assert message["data"]["events"][0]["actor"] == "api token"
    assert int(message["id"]) == newest + 1
    reader.close()


@pytest.mark.parametrize("garbled", ["not-a-number", "²", "١٢"])  # digits to str.isdigit, not to int()
def test_a_garbled_last_event_id_gets_a_fresh_snapshot_and_leaks_no_place(make_app, auth, garbled):
    client = make_app(STREAM_MAX_CLIENTS=1).test_client()
    for _ in range(3):  # with a leaked place the second would be refused
        reader = open_stream(client, auth, query_string={"last_id": garbled})
        reader.next()
        assert reader.next()["data"]["reset"] is True
        reader.close()


def test_a_request_that_fails_before_streaming_gives_its_place_back(make_app, auth, monkeypatch):
    app = make_app(STREAM_MAX_CLIENTS=1)
    monkeypatch.setattr(stream, "messages", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # TESTING propagates what would be a 500
        app.test_client().get("/api/bot/stream", headers=auth)
    assert stream.stream_slots(app).open == 0


def test_open_pages_share_one_view_per_change(make_app, auth, monkeypatch):
    app = make_app()
    computed = []
    real = stream.bot_stats
    monkeypatch.setattr(stream, "bot_stats", lambda: computed.append(1) or real())
    readers = [open_stream(app.test_client(), auth) for _ in range(3)]
    for reader in readers:
        reader.next()
        assert reader.next()["data"]["state"]["state"] == "stopped"
        reader.close()
    assert len(computed) == 1


def test_streams_beyond_the_cap_get_503_and_a_closed_stream_frees_its_place(make_app, auth):
    client = make_app(STREAM_MAX_CLIENTS=1).test_client()
    first = open_stream(client, auth)
    first.next()
    refused = client.get("/api/bot/stream", headers=auth)
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "poll /api/bot" in refused.get_json()["error"]
    first.close()
    open_stream(client, auth).close()


def test_a_stream_closed_before_its_first_read_frees_its_place(make_app, auth):
    client = make_app(STREAM_MAX_CLIENTS=1).test_client()
    client.get("/api/bot/stream", headers=auth, buffered=False).close()
    open_stream(client, auth).close()


def test_stream_ends_when_the_client_is_gone(app, auth):
    client = app.test_client()
    response = client.get("/api/bot/stream", headers=auth, buffered=False,
                          environ_overrides={"waitress.client_disconnected": lambda: True})
    messages = b"".join(response.response).decode()  # ends by itself, after the snapshot
    assert messages.count("event: state") == 1
    response.close()
    assert stream.stream_slots(app).open == 0


def test_end_streams_finishes_open_streams(app, auth):
    reader = open_stream(app.test_client(), auth)
    reader.next(), reader.next()
    stream.end_streams(app)
    with pytest.raises(StopIteration):
        while True:
            reader.next()
    reader.close()
    assert stream.stream_slots(app).open == 0
