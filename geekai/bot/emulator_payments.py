"""WeChat Pay's payment notices as web WeChat delivers them, for the emulator (tests and demo mode).

A 收款到账 notice is an app message (MsgType 49, AppMsgType 5) from the official account 微信支付
(VerifyFlag 24); its Content is the notice's XML, HTML-escaped with newlines as <br/>, the way
web WeChat sends it. geekai/payments/parser.py reads it back; a forged one comes from a friend
who renamed themselves 微信支付 (VerifyFlag 0) and is rejected by the recorder.
"""
from __future__ import annotations

import html
import secrets
import time


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


def as_web_wechat(xml: str) -> str:
    """How web WeChat sends an app message's Content: HTML-escaped, newlines as <br/>."""
    return html.escape(xml, quote=False).replace("\n", "<br/>")


def new_tx_id(now: float | None = None) -> str:
    """A transaction id shaped like WeChat Pay's: 4200 + 6 digits + the date + 10 digits (28 digits)."""
    day = time.strftime("%Y%m%d", time.localtime(now))
    return f"4200{secrets.randbelow(10 ** 6):06d}{day}{secrets.randbelow(10 ** 10):010d}"


def receipt_message(from_user: str, amount: str, note: str | None = None, tx_id: str | None = None,
                    now: int | None = None) -> dict:
    """The AddMsgList entry of a receipt notice from `from_user` (a UserName)."""
    now = int(now or time.time())
    xml = receipt_xml(tx_id or new_tx_id(now), amount, note=note, create_time=now)
    return {"MsgType": 49, "AppMsgType": 5, "FromUserName": from_user, "Content": as_web_wechat(xml),
            "CreateTime": now}
