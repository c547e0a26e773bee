"""`flask --app app run --debug` serves with exactly one bot, though the reloader loads the app twice."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request

from conftest import ROOT_DIR, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started_bots(db_path) -> int:
    try:
        with sqlite3.connect(db_path) as conn:
            return conn.execute("SELECT count(*) FROM bot_event WHERE from_state = 'stopped' "
                                "AND to_state = 'starting' AND reason = 'service started'").fetchone()[0]
    except sqlite3.Error:
        return 0


def answers(url) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_debug_reloader_starts_one_bot(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEEKAI_", "FLASK_", "WERKZEUG_"))}
    env.update(GEEKAI_INSTANCE_PATH=str(tmp_path), GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9",
               GEEKAI_BOT_RETRY_FIRST_SECONDS="5", NO_PROXY="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "run", "--debug", "--port", str(port)],
                            cwd=ROOT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=20)
        assert wait_for(lambda: started_bots(tmp_path / "geekai.sqlite") >= 1, timeout=10)
        assert not wait_for(lambda: started_bots(tmp_path / "geekai.sqlite") > 1, timeout=2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
