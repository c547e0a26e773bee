"""Two processes on one database: an order is credited once, a notice booked once."""
from __future__ import annotations

import multiprocessing
import os
import time

from geekai.db import db
from geekai.outbox import OutboxMessage
from geekai.payments.models import Order, Payment, PaymentNotice
from payment_helpers import message, receipt_xml

ROUNDS = 5
SETTINGS = {"TESTING": True, "API_TOKEN": "test-token-0123456789", "ADMIN_PASSWORD": "correct horse battery",
            "SECRET_KEY": "test-secret-key", "WECHAT_BASE_URL": "http://127.0.0.1:9",
            "PAYMENT_CALLBACK_URL": "http://127.0.0.1:9/hook", "PAYMENT_CALLBACK_SECRET": "callback-secret-123"}


def _worker(instance_path, database, worker, codes, barrier, results):
    """One process: at each round, wait for the other, then record its payment for the same order."""
    from geekai import create_app
    from geekai.jobs import message_handlers

    app = create_app(dict(SETTINGS, SQLALCHEMY_DATABASE_URI=database), instance_path=instance_path)
    [handler] = message_handlers(app)
    now = int(time.time())
    for round_, code in enumerate(codes):
        different = message(receipt_xml(f"42000000{worker}0{round_:02d}0000000000000000", "9.90", note=code),
                            msg_id=f"{worker}{round_:03d}", create_time=now)
        same = message(receipt_xml(f"4200000090{round_:02d}0000000000000000", "1.00"), msg_id=f"77{round_:03d}",
                       create_time=now)
        barrier.wait(timeout=30)
        handler(different)   # both pay the same order with their own transaction
        handler(same)        # and both see the same WeChat message
    results.put((worker, os.getpid()))


def test_two_processes_credit_each_order_once(make_app, tmp_path):
    app = make_app(**{k: v for k, v in SETTINGS.items() if k.startswith("PAYMENT")})
    client, auth = app.test_client(), {"Authorization": f"Bearer {SETTINGS['API_TOKEN']}"}
    orders = [client.post("/api/orders", json={"amount": "9.90", "reference": f"r{n}"}, headers=auth).get_json()
              for n in range(ROUNDS)]
    codes = [o["code"] for o in orders]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_worker, args=(str(tmp_path / "instance"), app.config["SQLALCHEMY_DATABASE_URI"], n, codes,
                                                          barrier, results))
               for n in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert {results.get(timeout=1)[0] for _ in workers} == {1, 2}
    with app.app_context():
        for order in orders:
            row = db.session.get(Order, order["id"])
            assert row.status == "paid" and row.payment_id is not None
            credited = db.session.execute(db.select(Payment).where(Payment.order_id == row.id)).scalars().all()
            assert [p.id for p in credited] == [row.payment_id]
        statuses = db.session.execute(db.select(Payment.status).where(Payment.amount_cents == 990)).scalars().all()
        assert sorted(statuses) == ["matched"] * ROUNDS + ["unclaimed"] * ROUNDS
        assert db.session.execute(db.select(db.func.count()).select_from(Payment)
                                  .where(Payment.amount_cents == 100)).scalar() == ROUNDS
        assert db.session.execute(db.select(db.func.count()).select_from(PaymentNotice)
                                  .where(PaymentNotice.msg_id.like("77%"))).scalar() == ROUNDS
        topics = db.session.execute(db.select(OutboxMessage.topic)).scalars().all()
        assert topics.count("order.paid") == ROUNDS
        assert topics.count("payment.received") == 3 * ROUNDS
