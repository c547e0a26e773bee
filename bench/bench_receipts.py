"""Receipts stored per second: the bot's message handler on a file SQLite database, as in production.

Each receipt goes the whole way: raw notice committed, sender check, parse, ledger row, order
match attempt, callback event queued in the outbox, committed. Run:

    /tmp/venv/bin/python bench/bench_receipts.py [--count 2000] [--orders 200] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from geekai import create_app  # noqa: E402
from geekai.jobs import message_handlers  # noqa: E402
from payment_helpers import OFFICIAL, as_web_wechat, message, receipt_xml  # noqa: E402

TARGET = 500


def run(count: int, orders: int, duplicates: bool) -> dict:
    """Record `count` receipts (a tenth of them paying orders) and time it."""
    with tempfile.TemporaryDirectory() as instance:
        app = create_app({"TESTING": True, "API_TOKEN": "bench-token-123", "ADMIN_PASSWORD": "bench-password",
                          "SECRET_KEY": "bench-secret-key", "PAYMENT_CALLBACK_URL": "http://127.0.0.1:9/hook",
                          "PAYMENT_CALLBACK_SECRET": "bench-callback-secret"}, instance_path=instance)
        client = app.test_client()
        auth = {"Authorization": "Bearer bench-token-123"}
        codes = [client.post("/api/orders", json={"amount": "1.00", "reference": f"r{n}"}, headers=auth).get_json()["code"]
                 for n in range(orders)]
        now = int(time.time())
        messages = []
        for n in range(count):
            note = codes[n // 10] if n % 10 == 0 and n // 10 < len(codes) else f"note {n}"
            xml = receipt_xml(f"42{n:026d}", "1.00", note=note, create_time=now)
            messages.append(message(as_web_wechat(xml) if n % 2 else xml, OFFICIAL))
        if duplicates:
            messages += messages[: count // 10]  # redeliveries: must be no-ops
        [handler] = message_handlers(app)
        latencies = []
        started = time.perf_counter()
        for msg in messages:
            t0 = time.perf_counter()
            handler(msg)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        with app.app_context():
            from geekai.db import db
            from geekai.payments.models import Order, Payment
            booked = db.session.execute(db.select(db.func.count()).select_from(Payment)).scalar()
            paid = db.session.execute(db.select(db.func.count()).select_from(Order).where(Order.status == "paid")).scalar()
    assert booked == count, (booked, count)
    # Every order's code is in exactly one receipt's note, with the order's amount: each is paid once.
    expected_paid = min(orders, (count + 9) // 10)
    assert paid == expected_paid, (paid, expected_paid)
    latencies.sort()
    return {"messages": len(messages), "booked": booked, "orders_paid": paid, "seconds": elapsed,
            "per_second": len(messages) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def report(results: list[dict], count: int) -> str:
    best = max(r["per_second"] for r in results)
    rows = "\n".join(f"| {n + 1} | {r['messages']} | {r['booked']} | {r['orders_paid']} | {r['seconds']:.2f} | "
                     f"{r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |" for n, r in enumerate(results))
    median = statistics.median(r["per_second"] for r in results)
    verdict = "meets" if median >= TARGET else "misses"
    return f"""## Receipts stored per second (`bench/bench_receipts.py`)

What is timed: the bot's registered message handler, called in one thread as wxpy's listener
calls it, for {count} distinct WeChat Pay receipts plus {count // 10} redeliveries. Each receipt:
raw notice committed, sender check, parse, ledger row, order match (a tenth carry an order code),
`payment.received` (and `order.paid`) queued in the outbox, committed. File SQLite in WAL mode,
`synchronous=NORMAL`, as the service runs; half the notices HTML-escaped as web WeChat sends them.
Callbacks are only queued here, not sent (sending is the outbox job's work, off this path).

Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}.

| run | messages | booked | orders paid | seconds | messages/s | p50 ms | p99 ms |
|---|---|---|---|---|---|---|---|
{rows}

Median {median:.0f} messages/s (best {best:.0f}): {verdict} the target of {TARGET}/s. In every run
each receipt was booked once and each order whose code was in a note was paid (checked).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", help="replace this section in the given markdown file")
    args = parser.parse_args()
    results = [run(args.count, args.orders, duplicates=True) for _ in range(args.runs)]
    text = report(results, args.count)
    print(text)
    if args.write:
        write_section(args.write, text)


def write_section(path: str, text: str) -> None:
    """Put the section in the file, replacing an earlier version of it and keeping the rest."""
    heading = text.splitlines()[0]
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    if heading in old:
        start = old.index(heading)
        following = old.find("\n## ", start + len(heading))
        old = old[:start] + (old[following + 1:] if following >= 0 else "")
    with open(path, "w", encoding="utf-8") as f:
        f.write(old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
