"""The fault suite (tests/faults/, `make test-faults`; `make test` runs it after the main suite).

Each case starts the real `python app.py` on a loopback port against a fake server in this
process (web WeChat: geekai/bot/emulator.py; iLink: geekai/bot/ilink_emulator.py), polls
/healthz every 100 ms for as long as the process runs (every answer 200, none slower than 1 s),
injects a fault, checks the state and the reason, clears it, checks that the bot recovers
without a restart, and that no message, receipt or transition was lost: every text the phone
sent was counted once by the bot (geekai_bot_messages_total), every receipt is booked once, and
the transitions form one unbroken chain the state machine allows, in the API and in the database.

The fault suite runs on SQLite only: what it tests is the bot and the process, not the database
(the main suite runs on SQLite and PostgreSQL). Its cases use `migrated_sqlite`, never the
`database` fixture, so they are not run once per database.

A FaultCase owns one instance folder, one fake server and the app.py processes started on it,
one at a time. Test modules import the `case` fixture from here: a conftest.py in this folder
would replace tests/conftest.py as the module `conftest` that the other tests import from.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request

import pytest
import requests

from geekai import states

from conftest import wait_for
from databases import copy_sqlite
from payment_helpers import as_web_wechat, receipt_xml
from service import Service

# What the issue asks of /healthz while a fault lasts: answered every time, never slower than this.
HEALTH_INTERVAL = 0.1
HEALTH_SLOWEST = 1.0
# Condition waits: generous, because the machine may be loaded; a passing run never waits them out.
WAIT = 30.0

# Settings every case starts from: short timeouts and backoffs, so that each fault plays out in seconds.
FAST = {
    "BOT_LOGIN_TIMEOUT": 2,
    "BOT_RETRY_FIRST_SECONDS": 0.2,
    "BOT_RETRY_MAX_SECONDS": 1,
    "BOT_STOP_GRACE_SECONDS": 3,
    "WATCHDOG_SECONDS": 45,
}


class HealthWatcher:
    """Polls GET /healthz every 100 ms from its own thread and keeps every failure and slow answer."""

    def __init__(self, url: str):
        self.url = url + "/healthz"
        self.polls = 0
        self.failures: list[str] = []
        self.slow: list[float] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    body = json.load(answer)
                if body != {"status": "ok"}:
                    self.failures.append(f"answer {body!r}")
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.failures.append(f"{type(exc).__name__}: {exc}")
            took = time.monotonic() - began
            self.polls += 1
            self.slowest = max(self.slowest, took)
            if took > HEALTH_SLOWEST:
                self.slow.append(took)
            next_at = max(next_at + HEALTH_INTERVAL, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def stop_and_check(self) -> None:
        """End the polling; fail on any failed or slow answer."""
        self._stop.set()
        self._thread.join(15)
        assert self.polls > 0, "/healthz was never polled"
        assert not self.failures, f"/healthz failed {len(self.failures)} of {self.polls} times: {self.failures[:3]}"
        assert not self.slow, f"/healthz answered slower than {HEALTH_SLOWEST} s {len(self.slow)} times " \
                              f"(slowest {max(self.slow):.2f} s of {self.polls})"


class _Phone:
    """What both phones do the same way on their fake server."""

    def scan(self) -> None:
        self.server.scan()

    def confirm(self) -> None:
        self.server.confirm()

    def send_text(self, text: str) -> None:
        self.server.send_text(text)

    def expire_qr(self) -> bool:
        return self.server.expire_qr()


class WebWeChat(_Phone):
    """The web-WeChat side (BOT_BACKEND=wxpy): the fake server of geekai/bot/emulator.py and the phone."""

    name = "wxpy"
    receipts = True  # WeChat Pay's notices come as web-WeChat messages only
    cache_file = "wxpy-session.pkl"
    online_path = "synccheck"  # the long-poll while online

    def __init__(self):
        from geekai.bot.emulator import WeChatEmulator

        self.server = WeChatEmulator(login_poll_hold=0.3, synccheck_hold=0.3).start()

    def settings(self, url: str) -> dict:
        return {"BOT_BACKEND": "wxpy", "WECHAT_BASE_URL": url}

    def log_out_on_the_phone(self) -> bool:
        return self.server.logout()


class Ilink(_Phone):
    """The iLink side (BOT_BACKEND=ilink): the fake server of geekai/bot/ilink_emulator.py and the phone."""

    name = "ilink"
    receipts = False
    cache_file = "ilink-token.json"
    online_path = "getupdates"

    def __init__(self):
        from geekai.bot.ilink_emulator import IlinkEmulator

        self.server = IlinkEmulator(qr_poll_hold=0.3, updates_hold=0.3).start()

    def settings(self, url: str) -> dict:
        return {"BOT_BACKEND": "ilink", "ILINK_BASE_URL": url}

    def log_out_on_the_phone(self) -> bool:
        """iLink has no logout notice: the session ends as a stale token (-14) on the next call."""
        return self.server.expire_session()


PHONES = {"wxpy": WebWeChat, "ilink": Ilink}


class FaultCase:
    """One case: an instance folder, the fake server, the app.py processes, and what must arrive."""

    def __init__(self, instance, phone):
        self.instance = instance
        self.phone = phone
        self.emulator = phone.server
        self.services: list[Service] = []
        self.svc: Service | None = None
        self.watcher: HealthWatcher | None = None
        self.token = ""
        self.texts_sent = 0
        self.receipts_sent: list[str] = []      # transaction ids, in the order the phone sent them
        self.delivered_before = 0               # messages counted by the processes that have ended
        self._tx = 0

    # -- processes ---------------------------------------------------------------------------
    def start(self, url: str | None = None, **settings) -> Service:
        """Start `python app.py` on a free loopback port and begin polling its /healthz.

        url: where the bot finds WeChat (default: the fake server's port, up or not)."""
        assert self.svc is None, "the previous process is still running"
        config = {**self.phone.settings(url or f"http://127.0.0.1:{self.emulator.port}"), **FAST, **settings}
        env = {f"GEEKAI_{key}": str(value) for key, value in config.items()}
        self.svc = Service(self.instance, **env)
        self.services.append(self.svc)
        self.watcher = HealthWatcher(self.svc.url)
        # /readyz answers once the app is built (and its secrets written): on a loaded machine
        # that may take longer than tests/service.py's 5 s timeout.
        requests.get(self.svc.url + "/readyz", timeout=60)
        self.token = json.loads((self.instance / "secrets.json").read_text())["API_TOKEN"]
        return self.svc

    def terminate(self, within: float = 10.0) -> float:
        """SIGTERM the process: it must exit 0 within `within` seconds with `stopped` recorded."""
        self.watcher.stop_and_check()
        self.delivered_before += self.messages_in()
        code, took = self.svc.terminate()
        assert code == 0, f"exit status {code}\n{self.log()}"
        assert took < within, f"SIGTERM took {took:.1f} s"
        assert self.svc.stored_state() == states.STOPPED
        assert self.svc.query("SELECT reason FROM bot_event ORDER BY id DESC LIMIT 1")[0][0] == "service shutting down"
        self.svc = self.watcher = None
        return took

    def finish(self) -> None:
        """End the case: a clean SIGTERM, then the whole history checked in the database."""
        self.terminate()
        self.check_history_in_database()
        for svc in self.services:
            assert "unexpected bot transition" not in "".join(svc.log), "".join(svc.log)
            assert "not recorded" not in "".join(svc.log), "".join(svc.log)

    def log(self) -> str:
        return "".join(self.svc.log[-60:]) if self.svc else ""

    def proc_sample(self) -> dict:
        """Threads, open file descriptors and resident memory (kB) of the process, from /proc."""
        pid = self.svc.proc.pid
        with open(f"/proc/{pid}/status") as status:
            rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M).group(1))
        return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "rss_kb": rss}

    # -- the API -----------------------------------------------------------------------------
    def get(self, path: str, **params):
        answer = requests.get(self.svc.url + path, params=params, timeout=15,
                              headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()
        return answer.json() if "json" in answer.headers.get("Content-Type", "") else answer

    def post(self, path: str) -> requests.Response:
        return requests.post(self.svc.url + path, timeout=15, headers={"Authorization": f"Bearer {self.token}"})

    def bot(self) -> dict:
        return self.get("/api/bot")

    def history(self) -> list[dict]:
        """Every transition through GET /api/bot/events (paged), oldest first."""
        page = self.get("/api/bot/events", limit=200)
        events = list(page["events"])
        while page["next"]:
            page = self.get(page["next"])
            events.extend(page["events"])
        return events[::-1]

    def mark(self) -> int:
        """The id of the newest transition so far (0 before any)."""
        page = self.get("/api/bot/events", limit=1)["events"]
        return page[0]["id"] if page else 0

    def since(self, mark: int) -> list[dict]:
        return [event for event in self.history() if event["id"] > mark]

    def wait_state(self, *wanted: str, timeout: float = WAIT) -> dict:
        """Wait until GET /api/bot shows one of `wanted`; fail with what it showed last."""
        seen = wait_for(lambda: (lambda s: s if s["state"] in wanted else None)(self.bot()), timeout, 0.05)
        assert seen, f"the bot never reached {wanted}; it shows {self.bot()}\n{self.log()}"
        return seen

    def wait_event(self, mark: int, predicate, timeout: float = WAIT) -> dict:
        """Wait for a transition after `mark` that matches; return it."""
        found = wait_for(lambda: next((e for e in self.since(mark) if predicate(e)), None), timeout, 0.05)
        assert found, f"no such transition after {mark}: {self.since(mark)}\n{self.log()}"
        return found

    def messages_in(self) -> int:
        """geekai_bot_messages_total{direction="in"} of the running process."""
        text = requests.get(self.svc.url + "/metrics", timeout=15).text
        return int(float(re.search(r'^geekai_bot_messages_total\{direction="in"\} (\S+)$', text, re.M).group(1)))

    # -- the phone ---------------------------------------------------------------------------
    def log_in_by_scan(self) -> dict:
        """As the admin: fetch the QR, scan and confirm it on the phone, wait for logged_in."""
        self.wait_state(states.WAITING_FOR_SCAN)
        assert self.get("/api/bot/qr.png").content.startswith(b"\x89PNG")
        self.phone.scan()
        self.wait_state(states.WAITING_FOR_CONFIRM)
        self.phone.confirm()
        return self.wait_state(states.LOGGED_IN)

    def send_text(self, count: int = 1) -> None:
        for _ in range(count):
            self.texts_sent += 1
            self.phone.send_text(f"fault suite text {self.texts_sent}")

    def send_receipt(self) -> str:
        """WeChat Pay's official account announces a payment; return its transaction id."""
        self._tx += 1
        tx_id = f"42000012342024091{os.getpid() % 10000:04d}{self._tx:07d}"
        now = int(time.time())
        self.emulator.inject_message({
            "MsgType": 49, "AppMsgType": 5, "FromUserName": self.emulator.mp_username("微信支付"),
            "Content": as_web_wechat(receipt_xml(tx_id, f"{self._tx}.00", create_time=now)), "CreateTime": now})
        self.receipts_sent.append(tx_id)
        return tx_id

    # -- nothing lost --------------------------------------------------------------------------
    def stored_receipts(self) -> tuple[list[str], list[tuple]]:
        """(transaction ids in the ledger, (msg_id, status) of every stored notice), from the database."""
        payments = [row[0] for row in self.svc.query("SELECT tx_id FROM payment ORDER BY id")]
        notices = self.svc.query("SELECT msg_id, status FROM payment_notice ORDER BY id")
        return payments, notices

    def wait_delivered(self, timeout: float = WAIT, exactly: bool = True) -> None:
        """Every text and receipt the phone sent has reached the bot; each receipt is booked once."""
        sent = self.texts_sent + len(self.receipts_sent)

        def arrived():
            return (self.delivered_before + self.messages_in() >= sent
                    and len(self.stored_receipts()[0]) >= len(self.receipts_sent))

        assert wait_for(arrived, timeout, 0.1), \
            f"sent {self.texts_sent} texts and {len(self.receipts_sent)} receipts; the bot counted " \
            f"{self.delivered_before + self.messages_in()} messages and booked {len(self.stored_receipts()[0])}\n" \
            f"{self.log()}"
        payments, notices = self.stored_receipts()
        assert sorted(payments) == sorted(self.receipts_sent), "a receipt was lost or booked twice"
        assert len(notices) == len(self.receipts_sent) == len({msg_id for msg_id, _ in notices})
        assert {status for _, status in notices} <= {"accepted"}, notices
        if exactly:
            assert self.delivered_before + self.messages_in() == sent, "a message was delivered twice"

    def check_delivery(self, exactly: bool = True) -> None:
        """A text (and on web WeChat a receipt) sent now arrive, and so has everything sent before."""
        self.send_text()
        if self.phone.receipts:
            self.send_receipt()
        self.wait_delivered(exactly=exactly)

    # -- no transition lost --------------------------------------------------------------------
    def check_history(self) -> list[dict]:
        """Through the API: each transition starts where the previous one ended, the state row is
        the last one's end, and every step is one the state machine allows."""
        events = self.history()
        check_chain([(e["id"], e["from"], e["to"], e["reason"]) for e in events])
        assert self.bot()["state"] == events[-1]["to"]
        return events

    def check_history_in_database(self) -> None:
        rows = self.services[-1].query("SELECT id, from_state, to_state, reason FROM bot_event ORDER BY id")
        check_chain(rows)
        assert self.services[-1].stored_state() == rows[-1][2]


def check_chain(rows: list[tuple]) -> None:
    """(id, from, to, reason) rows in id order: no gap between one's end and the next one's start."""
    assert rows, "no transition recorded"
    assert rows[0][1] == states.STOPPED, rows[0]
    for previous, row in zip(rows, rows[1:]):
        assert row[0] > previous[0]
        assert row[1] == previous[2], f"transition lost between {previous} and {row}"
    for row in rows:
        assert states.is_allowed(row[1], row[2]), f"a transition the state machine forbids: {row}"


@pytest.fixture(params=["wxpy"])
def case(request, tmp_path, migrated_sqlite):
    """A FaultCase with its own instance folder (a copy of the migrated SQLite template), fake
    server and processes. The backend is web WeChat unless a test parametrizes it indirectly:
    @pytest.mark.parametrize("case", ["wxpy", "ilink"], indirect=True)."""
    instance = tmp_path / "instance"
    copy_sqlite(migrated_sqlite, instance)
    phone = PHONES[request.param]()
    fault_case = FaultCase(instance, phone)
    yield fault_case
    phone.server.set_fault(None)  # release held requests: a killed process leaves no thread behind
    if fault_case.watcher is not None:
        fault_case.watcher._stop.set()
    for svc in fault_case.services:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()
        svc.proc.stderr.close()
    phone.server.stop()
