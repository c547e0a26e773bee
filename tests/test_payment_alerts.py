"""A forged payment notice reaches a person through the alert channels, once."""
from __future__ import annotations

import json

from geekai import outbox
from geekai.db import db
from geekai.jobs import message_handlers
from geekai.payments.models import PaymentNotice
from payment_helpers import FORGER, OFFICIAL, message, receipt_xml
from receivers import WebhookReceiver


def test_forged_notice_raises_one_alert_and_genuine_none(make_app):
    receiver = WebhookReceiver().start()
    try:
        app = make_app(ALERT_WEBHOOK_URL=receiver.url)
        forged = message(receipt_xml("4200001234202409100000000777", "88.00"), FORGER)
        for msg in (forged, forged, message(receipt_xml("4200001234202409100000000778", "1.00"), OFFICIAL)):
            for handler in message_handlers(app):
                handler(msg)
        assert outbox.deliver_due(app) == 1
        [alert] = [json.loads(r["body"]) for r in receiver.accepted()]
        assert alert["title"] == "geekai: rejected a forged WeChat Pay notice"
        assert "VerifyFlag 0" in alert["reason"] and "88.00" not in alert["title"]
        with app.app_context():  # the alert says what the notice's stored reason says
            notice = db.session.execute(db.select(PaymentNotice).where(PaymentNotice.status == "rejected")).scalar_one()
            assert alert["reason"] == f"notice {notice.id}: {notice.reason}"
    finally:
        receiver.stop()
