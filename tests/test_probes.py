"""Liveness never depends on the bot; readiness does only when BOT_REQUIRED."""
from __future__ import annotations

from conftest import log_in_by_scan, wait_for_state


def test_healthz_ignores_the_bot(make_app):
    client = make_app(BOT_REQUIRED=True).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_ready_without_bot_required(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_waits_for_login_when_bot_required(make_app, run_bot, emulator, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, BOT_REQUIRED=True)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready", "reason": "BOT_REQUIRED and the bot is stopped"}
    run_bot(app)
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.get("/readyz").status_code == 503
    assert client.get("/").status_code == 200  # the page (and its login) stays up for the admin
    log_in_by_scan(client, auth, emulator)
    assert client.get("/readyz").status_code == 200
    emulator.logout()
    wait_for_state(client, auth, "starting", "waiting_for_scan")
    assert client.get("/readyz").status_code == 503


def test_readyz_fails_when_the_database_does_not_answer(app, monkeypatch):
    from geekai.db import db

    client = app.test_client()

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    with app.app_context():
        monkeypatch.setattr(db.session, "execute", broken)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("database unavailable")


# -- the systemd units in deploy/ ---------------------------------------------------------------
def unit_settings(name: str) -> dict[str, list[str]]:
    """{key: [values]} of a systemd unit file in deploy/."""
    import os

    from conftest import ROOT_DIR

    settings: dict[str, list[str]] = {}
    with open(os.path.join(ROOT_DIR, "deploy", name), encoding="utf-8") as unit:
        for line in unit:
            line = line.strip()
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_a_config_error_is_not_restarted_in_a_loop():
    """app.py exits 2 on a bad config (tests/test_config.py); Restart=on-failure must not retry that."""
    settings = unit_settings("geekai.service")
    assert settings["Restart"] == ["on-failure"]
    assert "2" in " ".join(settings.get("RestartPreventExitStatus", [])).split()


def run_healthcheck(tmp_path, env: dict) -> list[str]:
    """Run the healthcheck's ExecStart as systemd would (after its $$ unescaping) with a stand-in
    systemctl; return the systemctl calls it made."""
    import os
    import shlex
    import subprocess

    settings = unit_settings("geekai-healthcheck.service")
    assert settings["EnvironmentFile"] == ["-/etc/geekai/env"]  # where geekai.service reads GEEKAI_PORT
    [command] = settings["ExecStart"]
    assert "$" not in command.replace("$$", "")  # systemd would expand a lone $ itself
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    argv = shlex.split(command.replace("$$", "$"))
    subprocess.run(argv, env={"PATH": f"{tmp_path}:{os.environ['PATH']}", **env}, timeout=30, check=True)
    return calls.read_text().splitlines() if calls.exists() else []


def test_healthcheck_probes_geekai_port_and_never_starts_a_stopped_service(tmp_path):
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        assert run_healthcheck(tmp_path, {"GEEKAI_PORT": str(server.server_port)}) == []
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        # try-restart: a service an admin stopped on purpose stays stopped.
        assert run_healthcheck(tmp_path, {"GEEKAI_PORT": str(closed)}) == ["try-restart geekai.service"]
