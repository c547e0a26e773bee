"""`python app.py` as a real process on a free port, for tests that need the real entry point."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from sqlalchemy.pool import NullPool

from conftest import ROOT_DIR


class Service:
    """`python app.py` in a subprocess, on a free port."""

    def __init__(self, instance, database=None, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
        environ.update({"NO_PROXY": "127.0.0.1", "GEEKAI_BOT_RETRY_FIRST_SECONDS": "0.2"}, **env)
        if database:
            environ["GEEKAI_SQLALCHEMY_DATABASE_URI"] = database
        self.instance = instance
        self.database = database or "sqlite:///" + str(instance / "geekai.sqlite")
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
        with urllib.request.urlopen(request, timeout=15) as response:  # a loaded machine is slow, not broken
            return json.load(response)

    def token(self) -> str:
        self.get("/readyz")  # waits until the app is built (and its secrets written)
        return json.loads((self.instance / "secrets.json").read_text())["API_TOKEN"]

    def query(self, sql: str, **params) -> list[tuple]:
        """Rows from the service's database, read beside it as an operator would."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql), params)]
        finally:
            engine.dispose()

    def stored_state(self) -> str:
        return self.query("SELECT state FROM bot_state")[0][0]

    def terminate(self) -> tuple[int, float]:
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        return code, time.monotonic() - began
