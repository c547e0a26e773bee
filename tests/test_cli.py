"""The `bot` CLI against a served app (CliRunner) and against the real `python app.py`."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pyqrcode
import pytest

from conftest import API_TOKEN, ROOT_DIR, log_in_by_scan, record, wait_for

from geekai.__main__ import group
from geekai.cli import qr_modules, render_qr


@pytest.fixture
def cli(app, monkeypatch):
    """Run `flask bot ...` through the app's CLI runner, as `flask --app app bot ...` would."""
    monkeypatch.delenv("GEEKAI_URL", raising=False)
    monkeypatch.delenv("GEEKAI_API_TOKEN", raising=False)
    runner = app.test_cli_runner()

    def run(*args, url=None, token=API_TOKEN):
        env = {"GEEKAI_URL": url} if url else {}
        if token:
            env["GEEKAI_API_TOKEN"] = token
        return runner.invoke(args=["bot", *args], env=env)

    return run


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_status_says_clearly_when_the_service_is_not_running(cli):
    result = cli("status", url=closed_port_url())
    assert result.exit_code == 2
    assert "the service is not running at http://127.0.0.1:" in result.output


def test_status_with_a_refused_token_exits_2(cli, app, serve):
    result = cli("status", url=serve(app), token="wrong-token-123")
    assert result.exit_code == 2 and "refused the API token" in result.output


def test_status_not_logged_in_exits_1(cli, app, serve):
    result = cli("status", url=serve(app))
    assert result.exit_code == 1 and result.output.startswith("stopped")
    as_json = cli("status", "--json", url=serve(app))
    assert as_json.exit_code == 1 and json.loads(as_json.output)["state"] == "stopped"


def test_status_error_exits_2(cli, app, serve):
    record(app, "starting", "error", "wxpy is not installed")
    result = cli("status", url=serve(app))
    assert result.exit_code == 2 and "error: wxpy is not installed" in result.output


def test_token_is_read_from_the_instance_folder(app, serve, monkeypatch):
    """`python -m geekai` builds no app: the token comes from instance/secrets.json."""
    from click.testing import CliRunner

    from geekai.instance_secrets import secrets_path, write_private

    write_private(secrets_path(app.instance_path), json.dumps({"API_TOKEN": API_TOKEN}).encode())
    monkeypatch.delenv("GEEKAI_API_TOKEN", raising=False)
    result = CliRunner().invoke(group(), ["bot", "--url", serve(app), "--instance", app.instance_path, "status"])
    assert result.exit_code == 1, result.output
    refused = CliRunner().invoke(group(), ["bot", "--url", serve(app), "--instance", "/nonexistent", "status"])
    assert refused.exit_code == 2


def test_login_wait_prints_the_qr_and_exits_0_when_logged_in(make_app, run_bot, emulator, serve, auth):
    app = make_app(WECHAT_BASE_URL=emulator.base_url)
    runner = app.test_cli_runner()
    run_bot(app)
    url = serve(app)
    client = app.test_client()

    def phone():
        wait_for(lambda: emulator.qr_uuid is not None and client.get("/api/bot", headers=auth)
                 .get_json()["state"] == "waiting_for_scan", timeout=10)
        wait_for(lambda: False, timeout=1.5)  # let the CLI poll and print the QR
        emulator.scan()
        emulator.confirm()

    threading.Thread(target=phone, daemon=True).start()
    result = runner.invoke(args=["bot", "login", "--wait", "--timeout", "20"],
                           env={"GEEKAI_URL": url, "GEEKAI_API_TOKEN": API_TOKEN})
    assert result.exit_code == 0, result.output
    assert "█" in result.output and "scan this QR" in result.output
    assert "logged in as" in result.output
    again = runner.invoke(args=["bot", "login"], env={"GEEKAI_URL": url, "GEEKAI_API_TOKEN": API_TOKEN})
    assert again.exit_code == 0 and "already logged_in" in again.output
    status = runner.invoke(args=["bot", "status"], env={"GEEKAI_URL": url, "GEEKAI_API_TOKEN": API_TOKEN})
    assert status.exit_code == 0


def test_login_times_out_with_exit_1(make_app, run_bot, emulator, serve):
    app = make_app(WECHAT_BASE_URL=emulator.base_url)
    run_bot(app)
    result = app.test_cli_runner().invoke(args=["bot", "login", "--wait", "--timeout", "1"],
                                          env={"GEEKAI_URL": serve(app), "GEEKAI_API_TOKEN": API_TOKEN})
    assert result.exit_code == 1 and "timed out after 1 s" in result.output


def test_login_without_a_bot_in_the_service_exits_2(cli, app, serve):
    result = cli("login", url=serve(app))
    assert result.exit_code == 2 and "does not run in this process" in result.output


def test_logout_and_events(bot_app, run_bot, emulator, serve, auth):
    run_bot(bot_app)
    client = bot_app.test_client()
    log_in_by_scan(client, auth, emulator)
    env = {"GEEKAI_URL": serve(bot_app), "GEEKAI_API_TOKEN": API_TOKEN}
    runner = bot_app.test_cli_runner()
    result = runner.invoke(args=["bot", "logout"], env=env)
    assert result.exit_code == 0 and result.output.startswith("needs_login")
    events = runner.invoke(args=["bot", "events", "--limit", "2"], env=env)
    header, *lines = events.output.strip().splitlines()
    assert events.exit_code == 0 and len(lines) == 2
    assert header.startswith("time (UTC+8)")
    assert "logged_in -> needs_login" in " ".join(lines[0].split()) and "api token" in lines[0]
    # China time, as on the page: the API's UTC moment plus 8 hours.
    newest = runner.invoke(args=["bot", "events", "--json", "--limit", "1"], env=env)
    at = datetime.fromisoformat(json.loads(newest.output)[0]["at"].replace("Z", "+00:00"))
    assert lines[0].startswith((at + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S"))
    as_json = json.loads(runner.invoke(args=["bot", "events", "--json", "--limit", "1"], env=env).output)
    assert as_json[0]["to"] == "needs_login"


@pytest.mark.parametrize("scale", [1, 3, 10])
def test_qr_is_decoded_from_the_png_at_any_scale(scale):
    code = pyqrcode.create("https://login.weixin.qq.com/l/gZ6v7-Pl9A==")
    buffer = io.BytesIO()
    code.png(buffer, scale=scale)
    assert qr_modules(buffer.getvalue()) == [[bool(m) for m in row] for row in code.code]


def test_qr_half_blocks_hold_two_rows_per_line():
    code = pyqrcode.create("https://login.weixin.qq.com/l/abc")
    buffer = io.BytesIO()
    code.png(buffer, scale=4)
    lines = render_qr(buffer.getvalue(), quiet=2).splitlines()
    size = len(code.code) + 4
    assert len(lines) == (size + 1) // 2 and all(len(line) == size for line in lines)
    # Two light quiet rows make full cells; then the finder's all-dark top row over its
    # dark-light-dark second row: light is drawn, so only the lower halves inside.
    assert lines[0][:2] == "██" and lines[1][2:9] == " ▄▄▄▄▄ "
    inverted = render_qr(buffer.getvalue(), invert=True, quiet=2).splitlines()
    assert inverted[0][:2] == "  " and inverted[1][2:9] == "█▀▀▀▀▀█"


# -- against the real service ------------------------------------------------------------------
def run_cli(svc, *args, module=True, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update({"GEEKAI_URL": svc.url, "GEEKAI_INSTANCE_PATH": str(svc.instance), "NO_PROXY": "127.0.0.1"})
    command = [sys.executable, "-m", "geekai", "bot", *args] if module else \
        [sys.executable, "-m", "flask", "--app", "app", "bot", *args]
    return subprocess.Popen(command, cwd=ROOT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _answers(svc) -> bool:
    try:
        return bool(svc.get("/api/bot", svc.token()))
    except OSError:
        return False


def test_against_the_running_service(service, emulator):
    svc = service(GEEKAI_WECHAT_BASE_URL=emulator.base_url)
    # The socket answers before the app is built; the token is written while it is built.
    assert wait_for(lambda: (svc.instance / "secrets.json").exists() and _answers(svc), timeout=15)
    status = run_cli(svc, "status")
    out, _ = status.communicate(timeout=30)
    assert status.returncode == 1, out

    first_qr = wait_for(lambda: emulator.qr_uuid, timeout=15)
    login = run_cli(svc, "login", "--wait", "--timeout", "30")
    # `login` asks for a new QR; once the service shows it, the CLI (polling each second) draws it.
    assert wait_for(lambda: emulator.qr_uuid not in (None, first_qr), timeout=15)
    token = svc.token()
    assert wait_for(lambda: svc.get("/api/bot", token)["state"] == "waiting_for_scan", timeout=10)
    wait_for(lambda: False, timeout=2.5)
    emulator.scan()
    emulator.confirm()
    out, _ = login.communicate(timeout=40)
    assert login.returncode == 0, out
    assert "█" in out and "logged in as" in out

    via_flask = run_cli(svc, "status", "--json", module=False)
    out, _ = via_flask.communicate(timeout=30)
    assert via_flask.returncode == 0, out
    assert json.loads(out.strip().splitlines()[-1])["state"] == "logged_in"
    svc.terminate()
    gone = run_cli(svc, "status")
    out, _ = gone.communicate(timeout=30)
    assert gone.returncode == 2 and "not running" in out


# -- against a scripted stand-in for the service -----------------------------------------------
@pytest.fixture
def fake_service():
    """A raw TCP server that answers each request with the next scripted reply for its path."""
    import socket

    servers = []

    def start(replies: dict) -> str:
        """replies: {"METHOD /path": [raw response bytes, ...]}; the last one repeats."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        servers.append(listener)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    method, path = head.split(b" ")[:2]
                    queue = replies[f"{method.decode()} {path.decode()}"]
                    conn.sendall(queue.pop(0) if len(queue) > 1 else queue[0])

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in servers:
        listener.close()


def http(status: int, body: bytes | dict, kind: str = "application/json") -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def run_main(url: str, *args, token: str | None = API_TOKEN, instance: str = "/nonexistent"):
    from click.testing import CliRunner

    env = {"GEEKAI_API_TOKEN": token or "", "GEEKAI_URL": url}
    return CliRunner().invoke(group(), ["bot", "--instance", instance, *args], env=env)


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.2p1\r\n",                                                 # BadStatusLine
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sta",  # IncompleteRead
    http(200, {"status": "ok"}),                                                  # JSON, but no state
    http(200, b"[1, 2]"),                                                         # JSON, not an object
], ids=["not-http", "cut-short", "no-state", "a-list"])
def test_a_malformed_answer_is_exit_2_not_a_traceback(fake_service, reply):
    url = fake_service({"GET /api/bot": [reply]})
    result = run_main(url, "status")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert url in result.output


def test_no_token_says_where_to_put_one(fake_service, tmp_path):
    url = fake_service({"GET /api/bot": [http(401, {"error": "admin only"})]})
    result = run_main(url, "status", token=None, instance=str(tmp_path))
    assert result.exit_code == 2 and "no API token found: set GEEKAI_API_TOKEN" in result.output


def qr_png() -> bytes:
    buffer = io.BytesIO()
    pyqrcode.create("https://login.weixin.qq.com/l/abc").png(buffer, scale=3)
    return buffer.getvalue()


def test_login_without_wait_exits_0_once_the_qr_is_printed(fake_service):
    url = fake_service({
        "POST /api/bot/login": [http(202, {"state": "starting"})],
        "GET /api/bot": [http(200, {"state": "starting"}),
                         http(200, {"state": "waiting_for_scan", "qr_expires_at": "2026-01-01T00:00:00Z"})],
        "GET /api/bot/qr.png": [http(200, qr_png(), "image/png")],
    })
    result = run_main(url, "login", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "█" in result.output and "scan this QR" in result.output


@pytest.mark.parametrize("state, code", [("needs_login", 1), ("stopped", 1), ("error", 2), ("disabled", 2)])
def test_login_that_ends_without_logging_in(fake_service, state, code):
    url = fake_service({
        "POST /api/bot/login": [http(202, {"state": "starting"})],
        "GET /api/bot": [http(200, {"state": "starting"}),
                         http(200, {"state": state, "reason": "the QR expired 3 times unscanned"})],
    })
    result = run_main(url, "login", "--wait", "--timeout", "10")
    assert result.exit_code == code, result.output
    assert f"login did not complete: {state}: the QR expired" in result.output


def test_help_names_the_instance_folder_the_code_reads(tmp_path, monkeypatch):
    """Not ./instance: the checkout's instance/ folder, whatever the current directory."""
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    shown = " ".join(CliRunner().invoke(group(), ["bot", "--help"], terminal_width=1000).output.split())
    assert "./instance" not in shown
    assert os.path.join(ROOT_DIR, "instance") in shown


# -- the command itself: entry point, environment, crashes, where the service is ------------------
def venv_command() -> str:
    """The `geekai` command `make` installs next to this Python (pyproject.toml's entry point)."""
    path = os.path.join(os.path.dirname(sys.executable), "geekai")
    assert os.access(path, os.X_OK), f"{path} missing: the Makefile installs it (pip install -e .)"
    return path


def run_command(command: list[str], url: str | None = None, cwd: str = "/", **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    environ.update({"GEEKAI_API_TOKEN": API_TOKEN, "NO_PROXY": "127.0.0.1", **env})
    if url:
        environ["GEEKAI_URL"] = url
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def test_the_venv_command_runs_from_any_directory(fake_service):
    url = fake_service({"GET /api/bot": [http(200, {"state": "needs_login", "reason": "scan the QR"})]})
    done = run_command([venv_command(), "bot", "status"], url=url)
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == "needs_login: scan the QR"


def test_a_python_without_the_projects_packages_gets_one_line_and_exit_2():
    # -S: no site-packages, as with the system's python3 outside the .venv.
    done = run_command([sys.executable, "-S", "-m", "geekai", "bot", "status"], cwd=ROOT_DIR)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "lacks the project's packages" in done.stderr and ".venv/bin/geekai" in done.stderr


def test_a_crash_is_one_line_and_exit_2(fake_service, tmp_path):
    # A garbled secrets.json is bad input (named); a directory in its place is not even a file.
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "secrets.json").write_text("{not json")
    url = fake_service({"GET /api/bot": [http(200, {"state": "logged_in"})]})
    garbled = run_command([venv_command(), "bot", "status", "--instance", str(tmp_path / "garbled")], url=url,
                          GEEKAI_API_TOKEN="")
    assert garbled.returncode == 2 and "Traceback" not in garbled.stderr
    assert "cannot read the API token from" in garbled.stderr and "secrets.json" in garbled.stderr


def test_an_unexpected_error_is_one_line_and_exit_2(monkeypatch, capsys):
    """What no branch foresaw (a bug) is still exit 2, never a traceback a script reads as 1."""
    import geekai.__main__ as entry
    from geekai import cli

    def broken(self):
        raise RuntimeError("something no branch handles\nsecond line")

    monkeypatch.setattr(cli.Client, "state", broken)
    monkeypatch.setenv("GEEKAI_API_TOKEN", API_TOKEN)
    with pytest.raises(SystemExit) as ended:
        entry.run(["bot", "status"])
    assert ended.value.code == 2
    assert capsys.readouterr().err == "geekai: unexpected error: RuntimeError: something no branch handles\n"


def test_geekai_host_and_port_say_where_the_service_is(fake_service):
    url = fake_service({"GET /api/bot": [http(200, {"state": "logged_in", "account": "GeekAI"})]})
    port = url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", "0.0.0.0"):  # a service listening everywhere is asked on loopback
        done = run_command([venv_command(), "bot", "status"], GEEKAI_HOST=host, GEEKAI_PORT=port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("logged_in as GeekAI")
    wrong = run_command([venv_command(), "bot", "status"], GEEKAI_PORT="50OO")
    assert wrong.returncode == 2 and "GEEKAI_PORT must be a port number" in wrong.stderr and "'50OO'" in wrong.stderr


def test_instance_and_url_work_before_and_after_the_subcommand(app, serve, fake_service, tmp_path):
    from click.testing import CliRunner

    from geekai.instance_secrets import secrets_path, write_private

    folder, empty = tmp_path / "cli-instance", tmp_path / "empty"
    folder.mkdir(), empty.mkdir()
    write_private(secrets_path(str(folder)), json.dumps({"API_TOKEN": API_TOKEN}).encode())
    real, other = serve(app), fake_service({"GET /api/bot": [http(500, {"error": "not this one"})]})
    env = {"GEEKAI_API_TOKEN": "", "GEEKAI_URL": other}
    for args in (["bot", "--instance", str(folder), "--url", real, "status"],
                 ["bot", "status", "--instance", str(folder), "--url", real],
                 ["bot", "--url", other, "--instance", str(empty), "status", "--url", real, "--instance", str(folder)]):
        result = CliRunner().invoke(group(), args, env=env)
        assert result.exit_code == 1 and result.output.startswith("stopped"), (args, result.output)  # the app's bot
    # The folder named last is the one whose token is sent.
    refused = CliRunner().invoke(group(), ["bot", "--instance", str(folder), "status", "--url", real,
                                           "--instance", str(empty)], env=env)
    assert refused.exit_code == 2 and "no API token found" in refused.output
