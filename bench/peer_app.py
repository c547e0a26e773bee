"""The peer that geekai's GET /api/bot is measured against: plain Flask and sqlite3 serving the
same JSON from the same database, behind the same bearer check, on the same waitress (16 threads).

    python bench/peer_app.py DATABASE PORT TOKEN
"""
from __future__ import annotations

import hmac
import sqlite3
import sys
import threading

from flask import Flask, abort, jsonify, request
from waitress import serve

DATABASE, PORT, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = Flask(__name__)
local = threading.local()
COLUMNS = ("state", "since", "reason", "detail", "attempt", "next_retry_at", "qr_expires_at", "account")


def connection() -> sqlite3.Connection:
    if not hasattr(local, "connection"):
        local.connection = sqlite3.connect(DATABASE)
    return local.connection


def iso(value):
    return None if value is None else value.replace(" ", "T")[:23] + "Z"


@app.get("/api/bot")
def bot():
    if not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {TOKEN}"):
        abort(401)
    row = connection().execute(f"SELECT {', '.join(COLUMNS)} FROM bot_state WHERE id = 1").fetchone()
    data = dict(zip(COLUMNS, row))
    for key in ("since", "next_retry_at", "qr_expires_at"):
        data[key] = iso(data[key])
    return jsonify(data)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


serve(app, host="127.0.0.1", port=PORT, threads=16, _quiet=True)
