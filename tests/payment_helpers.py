"""Building payment notices and messages as the bot hands them to handlers."""
from __future__ import annotations

import html
import itertools

from geekai.bot.backend import IncomingMessage

OFFICIAL = {"UserName": "@" + "a1" * 16, "NickName": "微信支付", "VerifyFlag": 24}
ASSISTANT = {"UserName": "@" + "c3" * 16, "NickName": "微信收款助手", "VerifyFlag": 24}
FORGER = {"UserName": "@" + "b2" * 16, "NickName": "微信支付", "VerifyFlag": 0}   # a friend renamed
GROUP = {"UserName": "@@" + "d4" * 16, "NickName": "微信支付", "VerifyFlag": 0}

_ids = itertools.count(7_000_000_000_000_000_000)


def receipt_xml(tx_id: str, amount: str = "12.00", note: str | None = None, create_time: int = 1725934578) -> str:
    """A 2021+ shaped 收款到账 notice (raw XML, as the phone app sees it)."""
    lines = [f"收款金额￥{amount}"] + ([f"付款方备注{note}"] if note is not None else []) + ["汇总今日第1笔收款"]
    des = "\n".join(lines)
    path = f"pages/customerDetails/customerDetails.html?id={tx_id}&amp;create_time={create_time}&amp;report=msg_detail"
    return (f'<msg><appmsg appid="" sdkver="0"><title><![CDATA[微信支付收款{amount}元]]></title>'
            f"<des><![CDATA[{des}]]></des><type>5</type><url><![CDATA[https://payapp.weixin.qq.com/payf2f/jumpf2fbill"
            f"?timestamp={create_time}&amp;openid=x]]></url><mmreader><template_header><pub_time>{create_time}</pub_time>"
            f"</template_header><template_detail><opitems><opitem><weapp_path><![CDATA[{path}]]></weapp_path>"
            f"</opitem></opitems></template_detail></mmreader></appmsg></msg>")


def refund_xml(tx_id: str) -> str:
    return (f"<msg><appmsg><title><![CDATA[微信支付退款通知]]></title><des><![CDATA[退款金额￥5.00\n退款原因 用户申请]]>"
            f"</des><url><![CDATA[https://payapp.weixin.qq.com/x?trans_id={tx_id}]]></url></appmsg></msg>")


def as_web_wechat(xml: str) -> str:
    """How web WeChat sends an app message's Content: HTML-escaped, newlines as <br/>."""
    return html.escape(xml, quote=False).replace("\n", "<br/>")


def message(content: str, contact: dict = OFFICIAL, msg_id: str | None = None, msg_type: int = 49,
            create_time: int = 1725934578) -> IncomingMessage:
    """An IncomingMessage as the wxpy adapter builds it."""
    msg_id = msg_id or str(next(_ids))
    raw = {"MsgId": msg_id, "NewMsgId": msg_id, "MsgType": msg_type, "Content": content,
           "FromUserName": contact["UserName"], "CreateTime": create_time}
    return IncomingMessage(id=msg_id, type="Sharing", text="", sender=contact["UserName"],
                           sender_name=contact["NickName"], sender_contact=dict(contact), raw=raw)
