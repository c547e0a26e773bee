"""The real entry point on a real socket: serves at once, shuts down cleanly on SIGTERM."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from conftest import ROOT_DIR, wait_for


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


@pytest.mark.parametrize("asked, kept", [(8, 8), (12, 12), (16, 12), (40, 12)])
def test_live_pages_never_take_every_server_thread(make_app, asked, kept):
    from geekai.server import fit_streams

    app = make_app(STREAM_MAX_CLIENTS=asked)
    fit_streams(app, threads=16)
    assert app.config["STREAM_MAX_CLIENTS"] == kept
