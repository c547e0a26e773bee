"""Posting and reading messages through the API, as the main application does."""
from __future__ import annotations

from sqlalchemy import text as sql

from conftest import wait_for
from geekai.db import db


def post(client, auth, to="张三", text="你好", **extra):
    return client.post("/api/messages", json={"to": to, "text": text, **extra}, headers=auth)


def message(client, auth, message_id) -> dict:
    return client.get(f"/api/messages/{message_id}", headers=auth).get_json()


def feed(client, auth, **query) -> list[dict]:
    return client.get("/api/messages", query_string=query, headers=auth).get_json()["messages"]


def wait_for_status(client, auth, message_id, *statuses, timeout=10.0) -> dict:
    """Wait until the message shows one of `statuses`; fail with what it shows."""
    seen = wait_for(lambda: message(client, auth, message_id)["status"] in statuses, timeout)
    current = message(client, auth, message_id)
    assert seen, f"message {message_id} never became {statuses}: {current}"
    return current


def rows(app, table="message", where="") -> int:
    """How many rows the table has (in the app's database, SQLite or PostgreSQL)."""
    with app.app_context():
        return db.session.execute(sql(f"SELECT count(*) FROM {table} {where}")).scalar()


def sent_texts(emulator, to_user=None) -> list[str]:
    """Texts the fake WeChat server accepted, oldest first (optionally to one UserName)."""
    return [s["Msg"]["Content"] for s in list(emulator.sent) if to_user in (None, s["Msg"]["ToUserName"])]
