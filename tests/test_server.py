"""The real entry point on a real socket: serves at once, shuts down cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import ROOT_DIR, wait_for


class Service:
    """`python app.py` in a subprocess, on a free port."""

    def __init__(self, instance, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
        environ.update({"NO_PROXY": "127.0.0.1", "GEEKAI_BOT_RETRY_FIRST_SECONDS": "0.2"}, **env)
        self.instance = instance
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", "0", "--instance", str(instance)],
                                     cwd=ROOT_DIR, env=environ, stderr=subprocess.PIPE, text=True)
        self.url = self._read_url()

    def _read_url(self) -> str:
        self.log = []
        for line in self.proc.stderr:
            self.log.append(line)
            if line.startswith("geekai: serving on "):
                # Keep reading, so that a full pipe never blocks the service's logging.
                threading.Thread(target=self.log.extend, args=(self.proc.stderr,), daemon=True).start()
                return line.split()[-1]
        raise AssertionError(f"service did not start (exit {self.proc.wait()}): {''.join(self.log)}")

    def get(self, path, token=None):
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def token(self) -> str:
        self.get("/readyz")  # waits until the app is built (and its secrets written)
        return json.loads((self.instance / "secrets.json").read_text())["API_TOKEN"]

    def stored_state(self) -> str:
        with sqlite3.connect(self.instance / "geekai.sqlite") as conn:
            return conn.execute("SELECT state FROM bot_state").fetchone()[0]

    def terminate(self) -> tuple[int, float]:
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        return code, time.monotonic() - began


@pytest.fixture
def service(tmp_path):
    started = []

    def start(**env):
        started.append(Service(tmp_path / "instance", **env))
        return started[-1]

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()
        svc.proc.stderr.close()


def test_serves_at_once_with_wechat_unreachable_and_stops_on_sigterm(service):
    svc = service(GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9")
    assert svc.get("/healthz") == {"status": "ok"}
    token = svc.token()
    assert wait_for(lambda: svc.get("/api/bot", token)["state"] == "retrying", timeout=10)
    code, took = svc.terminate()
    assert code == 0 and took < 10
    assert svc.stored_state() == "stopped"


def test_sigterm_while_wechat_hangs_exits_within_ten_seconds(service):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(10)
    try:
        svc = service(GEEKAI_WECHAT_BASE_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
                      GEEKAI_BOT_LOGIN_TIMEOUT="60")
        token = svc.token()
        assert wait_for(lambda: svc.get("/api/bot", token)["state"] == "starting", timeout=10)
        code, took = svc.terminate()
        assert code == 0 and took < 10
        assert svc.stored_state() == "stopped"
    finally:
        silent.close()


def test_restart_never_shows_previous_state(service):
    svc = service(GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9")
    token = svc.token()
    assert wait_for(lambda: svc.get("/api/bot", token)["state"] == "retrying", timeout=10)
    svc.proc.kill()  # no clean shutdown: the row still says retrying
    svc.proc.wait()
    assert svc.stored_state() == "retrying"
    again = service(GEEKAI_WECHAT_BASE_URL="http://127.0.0.1:9", GEEKAI_BOT_ENABLED="false")
    assert again.get("/api/bot", token)["state"] == "disabled"
    again.terminate()


def test_broken_instance_folder_ends_the_service_with_one_line(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = subprocess.run([sys.executable, "app.py", "--port", "0", "--instance", str(not_a_folder)],
                            cwd=ROOT_DIR, capture_output=True, text=True, timeout=30,
                            env={k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")})
    assert result.returncode == 1
    assert "geekai: cannot start:" in result.stderr


def test_healthz_answers_while_the_app_is_still_being_built():
    from flask import Flask
    from werkzeug.test import Client

    from geekai.server import WarmingApp

    warming = WarmingApp()
    client = Client(warming)
    assert client.get("/healthz").status_code == 200
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(client.get("/api/bot")))
    waiter.start()
    assert not wait_for(lambda: answers, timeout=0.3), "a request was served before the app was ready"
    app = Flask("stand-in")
    app.get("/api/bot")(lambda: {"state": "ready"})
    warming.app = app
    warming.ready.set()
    waiter.join(5)
    assert answers[0].get_json() == {"state": "ready"}
