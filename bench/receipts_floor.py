"""The floor for receipts: the SQL one receipt costs, in plain sqlite3 on geekai's own schema.

What geekai's payment handler writes per receipt, without an ORM and without parsing: the raw
notice committed first, then the ledger row, the order match, the notice's outcome and the
callback event in the outbox, committed. Redeliveries are looked up and skipped.

    python bench/receipts_floor.py COUNT ORDERS    (prints one JSON line, like receipts_driver.py)
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schema(instance: str) -> str:
    from geekai import create_app

    create_app({"TESTING": True, "API_TOKEN": "bench-token-123", "ADMIN_PASSWORD": "bench-password",
                "SECRET_KEY": "bench-secret-key"}, instance_path=instance)
    return os.path.join(instance, "geekai.sqlite")


def main(count: int, orders: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="geekai-bench-") as instance:
        db = sqlite3.connect(schema(instance))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        now = datetime.utcnow()
        for n in range(orders):
            db.execute("INSERT INTO payment_order (code, amount_cents, reference, status, created_at, expires_at) "
                       "VALUES (?, 100, ?, 'pending', ?, ?)", (f"C{n:05d}", f"r{n}", now, now + timedelta(hours=1)))
        db.commit()
        receipts = [(f"7{n:018d}", f"42{n:026d}", f"C{n // 10:05d}" if n % 10 == 0 and n // 10 < orders else f"note {n}")
                    for n in range(count)]
        receipts += receipts[: count // 10]
        started = time.perf_counter()
        for msg_id, tx_id, note in receipts:
            if db.execute("SELECT id FROM payment_notice WHERE msg_id = ?", (msg_id,)).fetchone():
                continue
            stored = datetime.utcnow()
            notice = db.execute(
                "INSERT INTO payment_notice (msg_id, msg_type, sender, sender_name, sender_verify_flag, content, "
                "create_time, stored_at, status, reason, title, note) VALUES (?, 49, 'gh', '微信支付', 24, ?, 0, ?, "
                "'received', '', '', '')", (msg_id, "<msg>receipt</msg>", stored)).lastrowid
            db.commit()
            payment = db.execute(
                "INSERT INTO payment (tx_id, amount_cents, note, status, received_at, recorded_at, notice_id, msg_id, "
                "sender) VALUES (?, 100, ?, 'unclaimed', ?, ?, ?, ?, 'gh')",
                (tx_id, note, stored, stored, notice, msg_id)).lastrowid
            db.execute("UPDATE payment_notice SET status = 'accepted', tx_id = ?, amount_cents = 100, note = ?, "
                       "payment_id = ? WHERE id = ?", (tx_id, note, payment, notice))
            order = db.execute("SELECT id FROM payment_order WHERE code = ? AND status = 'pending' "
                               "AND amount_cents = 100", (note,)).fetchone()
            events = [f"payment.received:{tx_id}"]
            if order:
                db.execute("UPDATE payment_order SET status = 'paid', paid_at = ?, payment_id = ? WHERE id = ?",
                           (stored, payment, order[0]))
                db.execute("UPDATE payment SET status = 'matched', order_id = ? WHERE id = ?", (order[0], payment))
                events.append(f"order.paid:{order[0]}")
            for key in events:
                db.execute("INSERT INTO outbox (topic, transport, target, payload, headers, idempotency_key, "
                           "sign_with, status, attempts, next_attempt_at, last_error, created_at) VALUES "
                           "(?, 'http', 'http://127.0.0.1:9/hook', '{}', '{}', ?, 'PAYMENT_CALLBACK_SECRET', "
                           "'pending', 0, ?, '', ?)", (key.split(":")[0], key, stored, stored))
            db.commit()
        seconds = time.perf_counter() - started
        booked = db.execute("SELECT count(*) FROM payment").fetchone()[0]
        paid = db.execute("SELECT count(*) FROM payment_order WHERE status = 'paid'").fetchone()[0]
        db.close()
    return {"seconds": seconds, "messages": len(receipts), "booked": booked, "orders_paid": paid}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
