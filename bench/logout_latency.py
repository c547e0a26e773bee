"""From WeChat's answer to the state row: how long a logout from the phone takes to be recorded.

The real wxpy logs in to the built-in emulator (long-polls held 1 s, as a quiet real server's
would be shorter than its 25 s); the phone logs out; the time until the state row in the
database has left `logged_in` is measured by polling the database file every 2 ms.

    python bench/logout_latency.py [--cycles 10]
"""
from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PASSWORD, ROOT, TOKEN, Spread, print_result  # noqa: E402

TITLE = "A logout from the phone, from WeChat's answer to the state row"
TARGET_MS = 100
SYNCCHECK_HOLD = 1.0


def stored_state(path: str) -> str:
    with sqlite3.connect(path) as connection:
        row = connection.execute("SELECT state FROM bot_state WHERE id = 1").fetchone()
        return row[0] if row else ""


def wait_state(path: str, predicate, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(stored_state(path)):
            return time.perf_counter()
        time.sleep(0.002)
    raise RuntimeError(f"state stayed {stored_state(path)}")


def measure(cycles: int) -> dict:
    sys.path.insert(0, ROOT)
    os.environ["NO_PROXY"] = "127.0.0.1"
    logging.disable(logging.WARNING)  # the expected "session ended" lines
    from geekai import create_app
    from geekai.bot import runtime as bot_runtime
    from geekai.bot.emulator import WeChatEmulator

    emulator = WeChatEmulator(login_poll_hold=1.0, synccheck_hold=SYNCCHECK_HOLD).start()
    latencies = Spread()
    with tempfile.TemporaryDirectory(prefix="geekai-bench-") as instance:
        app = create_app({"API_TOKEN": TOKEN, "ADMIN_PASSWORD": PASSWORD, "SECRET_KEY": "bench-secret-key",
                          "WECHAT_BASE_URL": emulator.base_url, "BOT_RETRY_FIRST_SECONDS": 0.2},
                         instance_path=instance)
        path = os.path.join(instance, "geekai.sqlite")
        runtime = bot_runtime.install(app)
        runtime.take_part()
        runtime.start()
        try:
            for _ in range(cycles):
                wait_state(path, lambda state: state == "waiting_for_scan")
                emulator.scan()
                emulator.confirm()
                wait_state(path, lambda state: state == "logged_in")
                # One held synccheck answered first: a session that synced once is a healthy one, so
                # its logout asks for a new QR at once instead of counting as a failure (backoff).
                time.sleep(SYNCCHECK_HOLD + 0.3)
                began = time.perf_counter()
                emulator.logout()   # the next synccheck answers 1101 at once
                latencies.add(wait_state(path, lambda state: state != "logged_in") - began)
        finally:
            runtime.shutdown(grace=3)
            emulator.stop()
    return {
        "title": TITLE,
        "command": f"python bench/logout_latency.py --cycles {cycles}",
        "what": (f"{cycles} login/logout cycles of the real wxpy against the emulator; from the phone's "
                 "logout (the emulator answers the held synccheck with 1101 at once) to the state row "
                 "leaving `logged_in`, read from the database file every 2 ms."),
        "table": "\n".join(["| | ms, median (min–max) |", "|---|---|",
                            f"| logout recorded | {latencies.show(0, 1000)} |"]),
        "checks": [("logout to state row, ms", latencies.median * 1000, f"<= {TARGET_MS}",
                    latencies.median * 1000 <= TARGET_MS)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    result = measure(args.cycles)
    print_result(result, digits=0)


if __name__ == "__main__":
    main()
