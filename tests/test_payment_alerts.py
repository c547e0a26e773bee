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


def _forge(app, contact: dict, count: int, tx_base: int = 900) -> None:
    for n in range(count):
        msg = message(receipt_xml(f"42000012342024091000000{tx_base + n:05d}", "88.00"), contact)
        for handler in message_handlers(app):
            handler(msg)


def test_a_flood_of_forged_notices_alerts_once_per_sender_and_hour(make_app, monkeypatch):
    from datetime import timedelta

    from geekai.payments import recorder

    receiver = WebhookReceiver().start()
    try:
        app = make_app(ALERT_WEBHOOK_URL=receiver.url)
        _forge(app, FORGER, 50)
        other = dict(FORGER, UserName="@" + "e5" * 16)
        _forge(app, other, 5, tx_base=2000)
        assert outbox.deliver_due(app, limit=200) == 2  # one for each sender, not 55
        with app.app_context():  # every notice is still kept, as rejected
            rejected = db.session.execute(db.select(db.func.count()).select_from(PaymentNotice)
                                          .where(PaymentNotice.status == "rejected")).scalar()
            assert rejected == 55
        later = recorder.utcnow() + timedelta(hours=1)
        monkeypatch.setattr(recorder, "utcnow", lambda: later)
        _forge(app, FORGER, 3, tx_base=3000)
        assert outbox.deliver_due(app, limit=200) == 1  # the next hour: that sender once more
        notes = [json.loads(r["body"])["note"] for r in receiver.accepted()]
        assert notes == ["further forged notices from this sender within the hour are only listed on the payments page"] * 3
    finally:
        receiver.stop()


def test_a_nickname_with_markup_renders_as_nothing_in_every_robot(make_app):
    receiver = WebhookReceiver().start()
    try:
        name = '[点我](http://evil.example/x) <at user_id="all">所有人</at> **urgent**'
        app = make_app(ALERT_WECOM_URL=receiver.url + "?c=wecom", ALERT_DINGTALK_URL=receiver.url + "?c=dingtalk",
                       ALERT_FEISHU_URL=receiver.url + "?c=feishu", ALERT_WEBHOOK_URL=receiver.url + "?c=webhook")
        _forge(app, dict(FORGER, NickName=name), 1)
        assert outbox.deliver_due(app) == 4
        bodies = {r["path"].split("c=")[1]: json.loads(r["body"]) for r in receiver.accepted()}
        robot_texts = {"wecom": bodies["wecom"]["markdown"]["content"], "dingtalk": bodies["dingtalk"]["text"]["content"],
                       "feishu": bodies["feishu"]["content"]["text"]}
        for channel, text in robot_texts.items():
            shown = text.split("status page")[0]  # our own link, at the end, may be markup
            for markup in ("[点我]", "](", "<at", "</at>", "**urgent", "http://evil"):
                assert markup not in shown, (channel, shown)
            assert "点我" in shown and "evil.example" in shown  # still readable
        assert "[status page](" in robot_texts["wecom"]  # our own link still renders
        assert name in bodies["webhook"]["reason"]  # the generic webhook is JSON, not rendered: as it was
    finally:
        receiver.stop()
