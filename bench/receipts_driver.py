"""One timed run of the payment handler over COUNT receipts, against the geekai of the current directory.

Run by bench/receipts.py with the current directory set to the source tree under test (this
checkout, or a worktree of an older commit), so that both are measured with the same driver:

    python bench/receipts_driver.py COUNT ORDERS
Prints one JSON line: {"seconds", "messages", "booked", "orders_paid"}.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "tests")]

from geekai import create_app  # noqa: E402
from geekai.jobs import message_handlers  # noqa: E402
from payment_helpers import OFFICIAL, as_web_wechat, message, receipt_xml  # noqa: E402


def main(count: int, orders: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="geekai-bench-") as instance:
        app = create_app({"TESTING": True, "API_TOKEN": "bench-token-123", "ADMIN_PASSWORD": "bench-password",
                          "SECRET_KEY": "bench-secret-key", "PAYMENT_CALLBACK_URL": "http://127.0.0.1:9/hook",
                          "PAYMENT_CALLBACK_SECRET": "bench-callback-secret"}, instance_path=instance)
        client, auth = app.test_client(), {"Authorization": "Bearer bench-token-123"}
        codes = [client.post("/api/orders", json={"amount": "1.00", "reference": f"r{n}"}, headers=auth).get_json()["code"]
                 for n in range(orders)]
        now = int(time.time())
        messages = []
        for n in range(count):
            note = codes[n // 10] if n % 10 == 0 and n // 10 < len(codes) else f"note {n}"
            xml = receipt_xml(f"42{n:026d}", "1.00", note=note, create_time=now)
            messages.append(message(as_web_wechat(xml) if n % 2 else xml, OFFICIAL))
        messages += messages[: count // 10]  # redeliveries: must be no-ops
        handlers = message_handlers(app)  # as the supervisor calls them, in order
        started = time.perf_counter()
        for msg in messages:
            for handler in handlers:
                handler(msg)
        seconds = time.perf_counter() - started
        with app.app_context():
            from geekai.db import db
            from geekai.payments.models import Order, Payment
            booked = db.session.execute(db.select(db.func.count()).select_from(Payment)).scalar()
            paid = db.session.execute(db.select(db.func.count()).select_from(Order)
                                      .where(Order.status == "paid")).scalar()
    return {"seconds": seconds, "messages": len(messages), "booked": booked, "orders_paid": paid}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
