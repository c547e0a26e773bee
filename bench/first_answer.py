"""How long from process start to the first /healthz answer, whatever the bot does.

Run by hand: `.venv/bin/python bench/first_answer.py [--runs N]`. Compares a bare Flask app
served by waitress with geekai with the bot disabled, WeChat unreachable, WeChat hanging, and a
QR nobody scans (the built-in emulator). Prints a Markdown table (docs/first-answer.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BARE_APP = """
import sys
from flask import Flask
from waitress.server import create_server
app = Flask(__name__)
@app.get("/healthz")
@app.get("/readyz")
def healthz():
    return {"status": "ok"}
server = create_server(app, host="127.0.0.1", port=int(sys.argv[1]))
server.run()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_answers(command, port, env) -> tuple[float, float]:
    """Seconds from spawning `command` to the first 200 from /healthz, then from /readyz."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return tuple(_wait_ok(proc, f"http://127.0.0.1:{port}{path}") - began for path in ("/healthz", "/readyz"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _wait_ok(proc, url) -> float:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}") from None
            time.sleep(0.002)


def scenarios(silent_url: str, emulator_url: str):
    geekai = [sys.executable, "app.py"]
    yield "bare Flask + waitress", [sys.executable, "-c", BARE_APP], {}
    yield "geekai, bot disabled", geekai, {"GEEKAI_BOT_ENABLED": "false"}
    yield "geekai, WeChat unreachable", geekai, {"GEEKAI_WECHAT_BASE_URL": "http://127.0.0.1:9"}
    yield "geekai, WeChat accepts and hangs", geekai, {"GEEKAI_WECHAT_BASE_URL": silent_url}
    yield "geekai, QR nobody scans", geekai, {"GEEKAI_WECHAT_BASE_URL": emulator_url}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from geekai.bot.emulator import WeChatEmulator

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)
    emulator = WeChatEmulator().start()
    rows = []
    try:
        for name, command, extra in scenarios(f"http://127.0.0.1:{silent.getsockname()[1]}", emulator.base_url):
            times, ready = [], []
            for _ in range(args.runs):
                instance = tempfile.mkdtemp(prefix="geekai-bench-")
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
                env.update(extra, GEEKAI_INSTANCE_PATH=instance, GEEKAI_PORT=str(port),
                           GEEKAI_ADMIN_PASSWORD="bench-password", NO_PROXY="127.0.0.1")
                cmd = command + ([str(port)] if command[1] == "-c" else [])
                health, full = first_answers(cmd, port, env)
                times.append(health)
                ready.append(full)
                shutil.rmtree(instance, ignore_errors=True)
            rows.append((name, statistics.median(times), min(times), max(times), statistics.median(ready)))
    finally:
        emulator.stop()
        silent.close()
    bare = rows[0][1]
    disabled = rows[1][1]
    print("| scenario | first /healthz, median (ms) | min | max | vs bare Flask | vs bot disabled "
          "| first /readyz (full app), median (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, median, low, high, full in rows:
        print(f"| {name} | {median * 1000:.0f} | {low * 1000:.0f} | {high * 1000:.0f} "
              f"| {median / bare:.2f}x | {median / disabled:.2f}x | {full * 1000:.0f} |")


if __name__ == "__main__":
    main()
