"""How long from process start to the first /healthz and /readyz answers, whatever the bot does.

Run by hand: `.venv/bin/python bench/first_answer.py [--runs N]` (or `make bench`). Compares a
bare Flask app served by waitress, and the smallest app on geekai's stack (Flask-SQLAlchemy, one
model, a query), with geekai with the bot disabled (a first start and a restart), WeChat
unreachable, WeChat hanging, and a QR nobody scans (the built-in emulator).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ROOT, Spread, clean_env, free_port, print_result, ratio_spread  # noqa: E402

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

# The least any app on geekai's stack does before its first /readyz: import Flask-SQLAlchemy (and
# so SQLAlchemy's ORM), define a model, make its table, query it.
STACK_FLOOR_APP = """
import os, sys
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from waitress.server import create_server
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(os.environ["GEEKAI_INSTANCE_PATH"], "floor.db")
db = SQLAlchemy(app)
class State(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    state = db.Column(db.String(32), nullable=False)
with app.app_context():
    db.create_all()
@app.get("/healthz")
@app.get("/readyz")
def readyz():
    db.session.execute(text("SELECT 1"))
    db.session.get(State, 1)
    return {"status": "ok"}
server = create_server(app, host="127.0.0.1", port=int(sys.argv[1]))
server.run()
"""


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


BARE, FLOOR, DISABLED, RESTART = ("bare Flask + waitress", "Flask-SQLAlchemy, one model (the stack's floor)",
                                  "geekai, bot disabled", "geekai, bot disabled, restart")


def scenarios(silent_url: str, emulator_url: str):
    geekai = [sys.executable, "app.py"]
    yield BARE, [sys.executable, "-c", BARE_APP], {}
    yield FLOOR, [sys.executable, "-c", STACK_FLOOR_APP], {}
    yield DISABLED, geekai, {"GEEKAI_BOT_ENABLED": "false"}
    # The usual start: the database, its migrations and the secrets are already there.
    yield RESTART, geekai, {"GEEKAI_BOT_ENABLED": "false"}
    yield "geekai, WeChat unreachable", geekai, {"GEEKAI_WECHAT_BASE_URL": "http://127.0.0.1:9"}
    yield "geekai, WeChat accepts and hangs", geekai, {"GEEKAI_WECHAT_BASE_URL": silent_url}
    yield "geekai, QR nobody scans", geekai, {"GEEKAI_WECHAT_BASE_URL": emulator_url}


TITLE = "First answer after start, in every bot condition"
HEALTHZ_VS_DISABLED = 1.10   # /healthz: within 10% of the bot-disabled run, whatever the bot does
HEALTHZ_VS_BARE = 1.5        # ... and close to a bare Flask app
READYZ_VS_BARE = 2.0         # /readyz (the whole app built): at most twice a bare Flask app's
READYZ_VS_FLOOR = 1.5        # ... which needs SQLAlchemy: geekai's own part at most half the stack's floor


def measure(runs: int) -> dict:
    sys.path.insert(0, ROOT)
    from geekai.bot.emulator import WeChatEmulator

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)
    emulator = WeChatEmulator().start()
    named = list(scenarios(f"http://127.0.0.1:{silent.getsockname()[1]}", emulator.base_url))
    previous = _previous_instance(named)
    health = {name: Spread() for name, _, _ in named}
    ready = {name: Spread() for name, _, _ in named}
    try:
        for _ in range(runs):  # interleaved: each round starts every scenario once
            for name, command, extra in named:
                instance = tempfile.mkdtemp(prefix="geekai-bench-")
                if name == RESTART:
                    shutil.copytree(previous, instance, dirs_exist_ok=True)
                port = free_port()
                env = clean_env(**extra, GEEKAI_INSTANCE_PATH=instance, GEEKAI_PORT=str(port))
                cmd = command + ([str(port)] if command[1] == "-c" else [])
                first, full = first_answers(cmd, port, env)
                health[name].add(first)
                ready[name].add(full)
                shutil.rmtree(instance, ignore_errors=True)
        phases = _phases(previous, runs)
    finally:
        emulator.stop()
        silent.close()
        shutil.rmtree(previous, ignore_errors=True)
    rows = ["| scenario | first /healthz, ms median (min–max) | vs bare Flask | vs bot disabled "
            "| first /readyz (whole app), ms | /readyz vs bare Flask | /readyz vs the stack's floor |",
            "|---|---|---|---|---|---|---|"]
    checks = []
    for name, _, _ in named:
        h_bare, h_disabled = ratio_spread(health[name], health[BARE]), ratio_spread(health[name], health[DISABLED])
        r_bare, r_floor = ratio_spread(ready[name], ready[BARE]), ratio_spread(ready[name], ready[FLOOR])
        rows.append(f"| {name} | {health[name].show(0, 1000)} | {h_bare.show(2)} | {h_disabled.show(2)} "
                    f"| {ready[name].show(0, 1000)} | {r_bare.show(2)} | {r_floor.show(2)} |")
        if name == FLOOR:
            checks.append(("/readyz of the stack's floor vs bare Flask (no app on this stack does better)",
                           r_bare.median, "(reported)", True))
            continue
        if name != BARE:
            checks.append((f"/readyz vs bare Flask, {name}", r_bare.median, f"<= {READYZ_VS_BARE}",
                           r_bare.median <= READYZ_VS_BARE))
            checks.append((f"/readyz vs the stack's floor, {name}", r_floor.median, f"<= {READYZ_VS_FLOOR}",
                           r_floor.median <= READYZ_VS_FLOOR))
            checks.append((f"/healthz vs bare Flask, {name}", h_bare.median, f"<= {HEALTHZ_VS_BARE}",
                           h_bare.median <= HEALTHZ_VS_BARE))
        if name not in (BARE, DISABLED, RESTART):
            checks.append((f"/healthz vs bot disabled, {name}", h_disabled.median, f"<= {HEALTHZ_VS_DISABLED}",
                           h_disabled.median <= HEALTHZ_VS_DISABLED))
    rows += ["", "Where a restart's time to the first `/readyz` goes (`bench/startup_phases.py`, in a new "
             f"interpreter each of {runs} times, on the same instance folder; the interpreter's own start "
             "not included):", "", "| phase | ms, median (min–max) |", "|---|---|"]
    rows += [f"| {name} | {spread.show(1)} |" for name, spread in phases.items()]
    return {
        "title": TITLE,
        "command": f"python bench/first_answer.py --runs {runs}",
        "what": ("Each run spawns the process with a new instance folder and polls every 2 ms until the first "
                 "200 from `/healthz`, then from `/readyz` (which needs the whole app: database, migrations "
                 "checked, blueprints, the state row replaced). A bare Flask app on waitress is the peer; the "
                 "stack's floor is the smallest app on geekai's stack (Flask-SQLAlchemy, one model, its table "
                 "made, one query per /readyz, on waitress), what no app built on Flask-SQLAlchemy can beat. "
                 "geekai runs with the bot disabled (a first start, and a restart on the instance folder an "
                 "earlier run left: database, migrations and secrets already there), WeChat unreachable (a "
                 "closed port), a WeChat that accepts and never answers, and the emulator where nobody "
                 f"scans. {runs} interleaved rounds."),
        "table": "\n".join(rows),
        "checks": checks,
    }


def _previous_instance(named) -> str:
    """An instance folder as a first start of geekai (bot disabled) leaves it, for the restarts."""
    folder = tempfile.mkdtemp(prefix="geekai-bench-previous-")
    port = free_port()
    command, extra = next((command, extra) for name, command, extra in named if name == RESTART)
    env = clean_env(**extra, GEEKAI_INSTANCE_PATH=folder, GEEKAI_PORT=str(port))
    first_answers(command, port, env)
    return folder


def _phases(previous: str, runs: int) -> dict[str, Spread]:
    """Each phase of a start, sampled `runs` times in new processes on copies of `previous`."""
    phases: dict[str, Spread] = {}
    for _ in range(runs):
        instance = tempfile.mkdtemp(prefix="geekai-bench-")
        shutil.copytree(previous, instance, dirs_exist_ok=True)
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "startup_phases.py"), instance],
                             cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=True, timeout=120)
        for name, ms in json.loads(out.stdout.splitlines()[-1]).items():
            phases.setdefault(name, Spread()).add(ms)
        shutil.rmtree(instance, ignore_errors=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    result = measure(args.runs)
    print_result(result, digits=2)


if __name__ == "__main__":
    main()
