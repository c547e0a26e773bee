"""One bot per deployment, with real processes: gunicorn's workers, SIGKILL, SIGSTOP, two app.py.

Each test runs on SQLite and on PostgreSQL (the `database` fixture).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from conftest import ADMIN_PASSWORD, API_TOKEN, ROOT_DIR, wait_for

LEASE_SECONDS = 2
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """Processes sharing one instance folder and one database, as a deployment's would."""

    def __init__(self, tmp_path, database, emulator):
        self.instance = tmp_path / "instance"
        self.database = database
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
        self.env.update(NO_PROXY="127.0.0.1", GEEKAI_INSTANCE_PATH=str(self.instance),
                        GEEKAI_SQLALCHEMY_DATABASE_URI=database, GEEKAI_WECHAT_BASE_URL=emulator.base_url,
                        GEEKAI_BOT_LEASE_SECONDS=str(LEASE_SECONDS), GEEKAI_BOT_RETRY_FIRST_SECONDS="0.2",
                        GEEKAI_API_TOKEN=API_TOKEN, GEEKAI_ADMIN_PASSWORD=ADMIN_PASSWORD,
                        GEEKAI_SECRET_KEY="test-secret-key")
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.url = ""

    def gunicorn(self, workers: int) -> subprocess.Popen:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        return self._spawn([sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", "4",
                            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "geekai.wsgi:app"])

    def app_py(self) -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = self._spawn([sys.executable, "app.py", "--port", str(port)])
        return proc, f"http://127.0.0.1:{port}"

    def _spawn(self, argv) -> subprocess.Popen:
        log = open(self.instance.parent / f"process-{len(self.procs)}.log", "w+")
        proc = subprocess.Popen(argv, cwd=ROOT_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log(self, index: int = 0) -> str:
        self.logs[index].flush()
        return (self.instance.parent / f"process-{index}.log").read_text()

    def get(self, path: str, url: str | None = None):
        request = urllib.request.Request((url or self.url) + path, headers=AUTH)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return None, b""

    def state(self, url: str | None = None) -> dict:
        status, body = self.get("/api/bot", url)
        return json.loads(body) if status == 200 else {}

    def query(self, sql: str) -> list[tuple]:
        engine = create_engine(self.database, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql))]
        except Exception:
            return []
        finally:
            engine.dispose()

    def leader_pid(self) -> int | None:
        rows = self.query("SELECT owner FROM bot_lease WHERE released = false")
        return int(rows[0][0].rsplit(":", 2)[1]) if rows else None

    def event_count(self) -> int:
        return self.query("SELECT count(*) FROM bot_event")[0][0]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_children(proc.pid, signal.SIGKILL)
                proc.kill()
            proc.wait(timeout=10)
        for log in self.logs:
            log.close()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def with_children(pid: int, sig) -> None:
    for child in children(pid):
        try:
            os.kill(child, signal.SIGCONT)
            os.kill(child, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def deployment(tmp_path, database, emulator):
    made = Deployment(tmp_path, database, emulator)
    yield made
    made.stop()


def log_in(deployment, emulator, url=None) -> dict:
    assert wait_for(lambda: deployment.state(url).get("state") == "waiting_for_scan", timeout=30), \
        deployment.state(url)
    emulator.scan()
    emulator.confirm()
    assert wait_for(lambda: deployment.state(url).get("state") == "logged_in", timeout=15), deployment.state(url)
    return deployment.state(url)


def test_four_gunicorn_workers_log_in_once_and_all_serve(deployment, emulator):
    master = deployment.gunicorn(workers=4)
    assert wait_for(lambda: len(children(master.pid)) == 4, timeout=30)
    log_in(deployment, emulator)
    assert not wait_for(lambda: emulator.request_counts["/jslogin"] > 1, timeout=3), "a second bot asked for a QR"
    assert emulator.request_counts["/cgi-bin/mmwebwx-bin/webwxinit"] == 1
    assert deployment.leader_pid() in children(master.pid)
    # Every worker answers the page, the API, the QR and the stream from the shared database.
    answers = [deployment.get("/api/bot") for _ in range(40)]
    assert all(status == 200 and json.loads(body)["state"] == "logged_in" for status, body in answers)
    assert deployment.get("/api/bot/qr.png")[0] == 404
    assert deployment.get("/")[0] == 200
    request = urllib.request.Request(deployment.url + "/api/bot/stream", headers=AUTH)
    with urllib.request.urlopen(request, timeout=5) as stream:
        first = b""
        while b"event: state" not in first:
            first += stream.readline()
        assert b'"state": "logged_in"' in stream.readline()
    # A command taken by any worker reaches the bot's.
    stop = urllib.request.Request(deployment.url + "/api/bot/stop", method="POST", headers=AUTH)
    with urllib.request.urlopen(stop, timeout=10) as response:
        assert json.loads(response.read())["state"] == "stopped"


def test_a_killed_leader_is_replaced_and_the_bot_logs_in_again_from_the_cache(deployment, emulator):
    master = deployment.gunicorn(workers=4)
    log_in(deployment, emulator)
    leader = deployment.leader_pid()
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    assert wait_for(lambda: deployment.leader_pid() not in (None, leader), timeout=LEASE_SECONDS + 10)
    assert wait_for(lambda: deployment.state().get("state") == "logged_in"
                    and deployment.query("SELECT pid FROM bot_state")[0][0] != leader, timeout=15)
    assert time.monotonic() - killed_at < LEASE_SECONDS + 15
    assert emulator.request_counts["/jslogin"] == 1, "the new leader should log in from the session cache"
    reasons = [row[0] for row in deployment.query("SELECT reason FROM bot_event WHERE actor = 'lease'")]
    assert any("runs the bot now" in reason for reason in reasons), reasons
    assert master.poll() is None


def test_a_frozen_leader_that_wakes_after_its_lease_writes_nothing(deployment, emulator):
    master = deployment.gunicorn(workers=2)
    log_in(deployment, emulator)
    frozen = deployment.leader_pid()
    os.kill(frozen, signal.SIGSTOP)
    try:
        assert wait_for(lambda: deployment.leader_pid() not in (None, frozen), timeout=LEASE_SECONDS + 15)
        assert wait_for(lambda: deployment.state().get("state") == "logged_in"
                        and deployment.query("SELECT pid FROM bot_state")[0][0] != frozen, timeout=20)
        successor = deployment.leader_pid()
    finally:
        os.kill(frozen, signal.SIGCONT)
    # Awake, the old leader finds its lease gone: its bot stops and nothing of it is recorded.
    deadline = time.monotonic() + 4 * LEASE_SECONDS
    while time.monotonic() < deadline:
        assert deployment.query("SELECT pid FROM bot_state")[0][0] != frozen, "the frozen leader wrote the state"
        time.sleep(0.1)
    assert deployment.leader_pid() == successor
    assert "lost the bot lease" in deployment.log(0)
    assert master.poll() is None


def test_two_app_py_processes_share_one_bot(deployment, emulator):
    first, first_url = deployment.app_py()
    assert wait_for(lambda: deployment.leader_pid() == first.pid, timeout=30)
    second, second_url = deployment.app_py()
    assert wait_for(lambda: deployment.state(second_url).get("state") == "waiting_for_scan", timeout=30)
    log_in(deployment, emulator, second_url)  # seen through the process that does not run the bot
    assert deployment.leader_pid() == first.pid
    first.send_signal(signal.SIGTERM)  # a clean stop hands the bot over at once
    assert first.wait(timeout=15) == 0
    assert wait_for(lambda: deployment.leader_pid() == second.pid, timeout=10)
    assert wait_for(lambda: deployment.state(second_url).get("state") == "logged_in", timeout=15)
    assert emulator.request_counts["/jslogin"] == 1
