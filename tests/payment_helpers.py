"""Building payment notices and messages as the bot hands them to handlers."""
from __future__ import annotations

import itertools

from geekai.bot.backend import IncomingMessage
from geekai.bot.emulator_payments import as_web_wechat, receipt_xml  # noqa: F401 (tests import them here)

OFFICIAL = {"UserName": "@" + "a1" * 16, "NickName": "微信支付", "VerifyFlag": 24}
ASSISTANT = {"UserName": "@" + "c3" * 16, "NickName": "微信收款助手", "VerifyFlag": 24}
FORGER = {"UserName": "@" + "b2" * 16, "NickName": "微信支付", "VerifyFlag": 0}   # a friend renamed
GROUP = {"UserName": "@@" + "d4" * 16, "NickName": "微信支付", "VerifyFlag": 0}

_ids = itertools.count(7_000_000_000_000_000_000)


def refund_xml(tx_id: str) -> str:
    return (f"<msg><appmsg><title><![CDATA[微信支付退款通知]]></title><des><![CDATA[退款金额￥5.00\n退款原因 用户申请]]>"
            f"</des><url><![CDATA[https://payapp.weixin.qq.com/x?trans_id={tx_id}]]></url></appmsg></msg>")


def message(content: str, contact: dict = OFFICIAL, msg_id: str | None = None, msg_type: int = 49,
            create_time: int = 1725934578) -> IncomingMessage:
    """An IncomingMessage as the wxpy adapter builds it."""
    msg_id = msg_id or str(next(_ids))
    raw = {"MsgId": msg_id, "NewMsgId": msg_id, "MsgType": msg_type, "Content": content,
           "FromUserName": contact["UserName"], "CreateTime": create_time}
    return IncomingMessage(id=msg_id, type="Sharing", text="", sender=contact["UserName"],
                           sender_name=contact["NickName"], sender_contact=dict(contact), raw=raw)
