"""Parse WeChat Pay "收款到账" notices (app messages, MsgType 49) into receipts.

Pure and stdlib-only: no Flask, no database. `parse_notice` never raises; every input ends as a
`receipt`, an `ignored` notice (a known kind that is not a customer payment) or `unparsed` (with
the reason), so the caller can store all of them and lose nothing.

Shapes handled (see tests/fixtures/payments/):
* web WeChat (what itchat/wxpy receive): Content HTML-escaped, newlines sent as ``<br/>``, labels
  with a full-width colon (``收款金额：￥0.01``); group/forwarded content prefixed with ``sender:\\n``;
* app-side XML (2019+): raw XML, ``des`` lines ``收款金额￥12.00`` / ``付款方备注…``;
* transaction id: ``trans_id`` or ``id`` query parameter of any ``url``/``weapp_path`` element
  (2021+ ``pages/customerDetails/customerDetails.html?id=…``), else ``ext_pay_info/pay_outtradeno``
  (the only unique id that 2018-2019 personal-QR notices carry).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ParsedNotice",
    "parse_notice",
    "amount_to_str",
    "to_cents",
    "MAX_AMOUNT_CENTS",
    "is_payment_sender",
    "PAYMENT_SENDER_NAMES",
]

# WeChat's own official accounts that send receipts; a friend or group with the same nickname is
# rejected by is_payment_sender through the VerifyFlag and UserName checks.
PAYMENT_SENDER_NAMES = frozenset({"微信支付", "微信收款助手"})

# Real notices are 5-15 KB; anything far larger is not a notice and only costs parse time.
MAX_CONTENT_CHARS = 256 * 1024
# Amounts (received, and ordered through the API) are below this: 10 billion yuan is no personal
# receipt, and every amount fits the ledger's 64-bit columns with room to sum.
MAX_AMOUNT_CENTS = 10**12
# VerifyFlag bit that web WeChat sets on official (公众号) accounts: 8, 24, 29, 56 all have it.
_VERIFY_FLAG_OFFICIAL = 8

_KIND_RECEIPT, _KIND_IGNORED, _KIND_UNPARSED = "receipt", "ignored", "unparsed"

_XML_START = re.compile(r"<(?:\?xml|msg[\s>/]|appmsg[\s>/])")
# One pass over the XML entities only: html.unescape would also turn "&timestamp=" into "×tamp=".
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'", "#39": "'", "#x27": "'"}
_ESCAPED = re.compile(r"&(lt|gt|amp|quot|apos|#39|#x27);")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_AMOUNT = re.compile(r"收款金额\s*[:：]?\s*[￥¥]\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_AMOUNT_SHAPE = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_PLAIN_AMOUNT_SHAPE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_TITLE_AMOUNT = re.compile(r"([0-9][0-9,]*\.[0-9]{2})\s*元|[￥¥]\s*([0-9][0-9,]*\.[0-9]{2})")
# [^\S\n] keeps an empty note from swallowing the next line.
_NOTE = re.compile(r"付款方备注[^\S\n]*[:：]?[^\S\n]*([^\n]*)")
# Where a note ends when WeChat (or a logger) flattened the des lines into one string.
_NOTE_END = re.compile(r"汇总|收款店铺|顾客信息|说明")
_TX_ID = re.compile(r"[0-9A-Za-z_\-]{8,64}")
_TIME_TAGS = ("pub_time", "create_time", "createtime", "CreateTime")

# Classification looks at the title and at des *labels* only, never at free text: a payer could
# otherwise write "退款" in the note and get a genuine payment ignored.
_REFUND_TITLE = ("退款",)
_OUTGOING_TITLE = ("支付凭证", "已支付", "付款成功", "支付成功", "扣费", "提现", "付款")
_TRANSFER_TITLE = ("收款入账", "商家转账")
_RECEIPT_TITLE = ("收款", "到账")
_REFUND_LABEL = re.compile(r"^\s*退款金额", re.MULTILINE)
_OUTGOING_LABEL = re.compile(r"^\s*(?:付款金额|支付金额|扣费金额|提现金额)", re.MULTILINE)
_RECEIPT_LABEL = re.compile(r"^\s*收款金额", re.MULTILINE)


@dataclass(frozen=True)
class ParsedNotice:
    """The outcome of parsing one notice; amounts in integer cents."""

    kind: str
    amount_cents: Optional[int] = None
    note: str = ""
    tx_id: Optional[str] = None
    received_at: Optional[datetime] = None
    title: str = ""
    reason: str = ""
    raw: str = ""


class _Reject(Exception):
    """Internal: stop parsing with a kind and a reason."""

    def __init__(self, kind: str, reason: str, title: str = ""):
        super().__init__(reason)
        self.kind, self.reason, self.title = kind, reason, title


def amount_to_str(cents: int) -> str:
    """Format integer cents as a decimal string: 1234 -> "12.34"."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"cents must be int, not {type(cents).__name__}")
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def is_payment_sender(contact) -> bool:
    """True only for WeChat's verified official 微信支付 / 微信收款助手 accounts."""
    try:
        user = contact.get("UserName")
        nick = contact.get("NickName")
        flag = _as_int(contact.get("VerifyFlag"))
    except Exception:  # not a mapping at all
        return False
    if not isinstance(user, str) or not user.startswith("@") or user.startswith("@@"):
        return False
    if flag is None or not flag & _VERIFY_FLAG_OFFICIAL:
        return False
    return isinstance(nick, str) and nick.strip() in PAYMENT_SENDER_NAMES


def parse_notice(content, create_time=None) -> ParsedNotice:
    """Parse one notice's Content; never raises."""
    raw = _as_raw(content)
    try:
        return _parse(raw, create_time)
    except _Reject as r:
        return ParsedNotice(kind=r.kind, reason=r.reason, title=r.title, raw=raw)
    except Exception as e:  # the safety net: a bug here must not lose the notice
        return ParsedNotice(kind=_KIND_UNPARSED, reason=f"parser error: {type(e).__name__}", raw=raw)


def _parse(raw: str, create_time) -> ParsedNotice:
    """Run the steps; raises _Reject for every non-receipt."""
    root = _parse_xml(_normalize(raw))
    appmsg = root if root.tag == "appmsg" else root.find(".//appmsg")
    if appmsg is None:
        raise _Reject(_KIND_UNPARSED, "no appmsg element")
    title = _text(appmsg.find("title"))
    des = _des(root)
    if not title and not des:
        raise _Reject(_KIND_UNPARSED, "app message without title or des")
    _classify(title, des)
    amount = _amount(des, title, root)
    tx_id = _tx_id(root)
    if tx_id is None:
        raise _Reject(_KIND_UNPARSED, "no transaction id (no id/trans_id in url or weapp_path)", title)
    return ParsedNotice(
        kind=_KIND_RECEIPT,
        amount_cents=amount,
        note=_note(des, root),
        tx_id=tx_id,
        received_at=_received_at(create_time, root),
        title=title,
        raw=raw,
    )


def _as_raw(content) -> str:
    """The original content as text ("" for None, bytes decoded leniently)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (bytes, bytearray)):
        return bytes(content).decode("utf-8", errors="replace")
    return ""


def _normalize(raw: str) -> str:
    """Unescape, turn <br/> into newlines, and cut any sender prefix or trailing junk."""
    if not raw.strip():
        raise _Reject(_KIND_UNPARSED, "empty content")
    if len(raw) > MAX_CONTENT_CHARS:
        raise _Reject(_KIND_UNPARSED, f"content too large ({len(raw)} chars)")
    text = raw
    # Web WeChat sends the XML HTML-escaped; itchat usually unescapes it, but not every path does.
    if not _XML_START.search(text) and "&lt;" in text:
        text = _ESCAPED.sub(lambda m: _ENTITIES[m.group(1)], text)
    # Web WeChat encodes newlines as a bare <br/>, also inside CDATA (where they are des lines).
    text = _BR.sub("\n", text)
    if _DTD.search(text):
        raise _Reject(_KIND_UNPARSED, "DTD/entity declarations are not allowed")
    start = _XML_START.search(text)
    if start is None:
        raise _Reject(_KIND_UNPARSED, "not an XML app message")
    text = text[start.start():]
    end = text.rfind("</msg>")
    return text[: end + len("</msg>")] if end >= 0 else text


def _parse_xml(text: str) -> ET.Element:
    """Parse with expat; the DTD was already refused, so no entity can expand."""
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise _Reject(_KIND_UNPARSED, f"malformed XML: {e}") from None
    except UnicodeError:  # lone surrogates cannot be encoded for expat
        raise _Reject(_KIND_UNPARSED, "malformed XML: invalid characters") from None


def _text(el) -> str:
    """An element's stripped text, "" when missing."""
    return (el.text or "").strip() if el is not None else ""


def _des(root: ET.Element) -> str:
    """The first des element's text, with literal "\\n" turned into newlines."""
    des = _text(next(root.iter("des"), None))
    # Some bridges double-escape newlines; a literal backslash-n never occurs in a real note.
    return des.replace("\\n", "\n")


def _classify(title: str, des: str) -> None:
    """Reject notices that are known not to be customer receipts."""
    if any(w in title for w in _REFUND_TITLE) or _REFUND_LABEL.search(des):
        raise _Reject(_KIND_IGNORED, "refund notice", title)
    receipt_label = _RECEIPT_LABEL.search(des) is not None
    outgoing = any(w in title for w in _OUTGOING_TITLE) or _OUTGOING_LABEL.search(des)
    if outgoing and not receipt_label:
        raise _Reject(_KIND_IGNORED, "outgoing payment or service notice", title)
    if any(w in title for w in _TRANSFER_TITLE):
        raise _Reject(_KIND_IGNORED, "merchant transfer (商家转账), not a customer payment", title)
    if not receipt_label and not any(w in title for w in _RECEIPT_TITLE):
        raise _Reject(_KIND_IGNORED, "not a receipt notice", title)


def _amount(des: str, title: str, root: ET.Element) -> int:
    """The received amount in cents, checked against the title's amount when it has one."""
    text = _amount_text(des, root)
    if text is None:
        raise _Reject(_KIND_UNPARSED, "no 收款金额 amount found", title)
    cents = _to_cents(text, title)
    shown = _TITLE_AMOUNT.search(title)
    if shown:
        # A title/des disagreement means an unknown or tampered format: better unparsed than wrong.
        shown_cents = _to_cents(shown.group(1) or shown.group(2), title)
        if shown_cents != cents:
            raise _Reject(_KIND_UNPARSED, f"amount mismatch: title {shown_cents} vs des {cents}", title)
    return cents


def _amount_text(des: str, root: ET.Element) -> Optional[str]:
    """The amount string from des, else from the template's 收款金额 line."""
    m = _AMOUNT.search(des)
    if m:
        return m.group(1)
    for key, value in _template_lines(root):
        if key == "收款金额":
            m = _AMOUNT.search(f"收款金额{value}")
            return m.group(1) if m else value
    return None


def _to_cents(text: str, title: str) -> int:
    try:
        return to_cents(text, grouped=True)
    except ValueError as e:
        raise _Reject(_KIND_UNPARSED, str(e), title) from None


def to_cents(text: str, grouped: bool = False) -> int:
    """Yuan as decimal text ("12", "0.5", "12.00") to exact integer cents; ValueError saying why not.

    Plain digits only: no exponent ("1e2"), underscore ("1_000"), NaN or infinity, at most 2
    decimals, positive and below MAX_AMOUNT_CENTS. `grouped` also allows thousands commas
    ("1,234.56") as notices print them.
    """
    shape = _AMOUNT_SHAPE if grouped else _PLAIN_AMOUNT_SHAPE
    if not isinstance(text, str) or not shape.fullmatch(text):
        raise ValueError(f"malformed amount {text!r}")
    plain = text.replace(",", "")
    if len(plain.lstrip("-").split(".")[0]) > len(str(MAX_AMOUNT_CENTS)):  # before any big arithmetic
        raise ValueError(f"amount too large {text!r}")
    value = Decimal(plain)
    if value.as_tuple().exponent < -2:
        raise ValueError(f"amount has more than 2 decimals {text!r}")
    if value <= 0:
        raise ValueError(f"amount not positive {text!r}")
    cents = int(value * 100)
    if cents >= MAX_AMOUNT_CENTS:
        raise ValueError(f"amount too large {text!r}")
    return cents


def _note(des: str, root: ET.Element) -> str:
    """The payer's note (付款方备注), "" when none; 收款方备注 is the payee's own text, not it."""
    m = _NOTE.search(des)
    if m:
        note = m.group(1)
        # Only a flattened des (no line breaks) needs the next label to tell where the note ends.
        end = None if "\n" in des else _NOTE_END.search(note)
        return (note[: end.start()] if end else note).strip()
    for key, value in _template_lines(root):
        if key.rstrip(":：") == "付款方备注":
            return value.strip()
    return ""


def _template_lines(root: ET.Element) -> Iterator[tuple]:
    """(key word, value word) pairs of the card's template_detail lines."""
    for parent in root.iter():
        if parent.tag not in ("topline", "line"):
            continue
        key = _text(parent.find("key/word"))
        if key:
            yield key, _text(parent.find("value/word"))


def _tx_id(root: ET.Element) -> Optional[str]:
    """trans_id, then id, from url/weapp_path elements; else ext_pay_info's pay_outtradeno."""
    links = [_text(el) for el in root.iter() if el.tag in ("url", "weapp_path")]
    for name in ("trans_id", "id"):
        for link in links:
            value = _query_param(link, name)
            if value:
                return value
    out_trade_no = _text(root.find(".//ext_pay_info/pay_outtradeno"))
    # Older personal-QR notices carry no trans_id; this is WeChat's unique id for the payment.
    if out_trade_no and re.fullmatch(r"[0-9A-Za-z_\-]{16,128}", out_trade_no):
        return out_trade_no
    return None


def _query_param(link: str, name: str) -> Optional[str]:
    """One well-formed query parameter of a URL or mini-program path, else None."""
    if not link:
        return None
    # Only &amp; may survive inside CDATA; html.unescape would also eat "&timestamp=" as "&times".
    try:
        query = urlsplit(link.replace("&amp;", "&")).query
    except ValueError:  # e.g. "Invalid IPv6 URL" from a stray "[" in the host part
        return None
    values = parse_qs(query).get(name) or []
    value = values[0].strip() if values else ""
    return value if _TX_ID.fullmatch(value) else None


def _received_at(create_time, root: ET.Element) -> Optional[datetime]:
    """UTC time from create_time, else from a pub_time/create_time element."""
    stamp = _to_datetime(create_time)
    if stamp is not None:
        return stamp
    for tag in _TIME_TAGS:
        for el in root.iter(tag):
            stamp = _to_datetime(_text(el))
            if stamp is not None:
                return stamp
    return None


def _to_datetime(value) -> Optional[datetime]:
    """A Unix timestamp (seconds, or milliseconds as some hooks send) as aware UTC, else None."""
    seconds = _as_int(value)
    if seconds is None or seconds <= 0:
        return None
    if seconds > 10**11:  # milliseconds: 10**11 s is the year 5138
        seconds //= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _as_int(value) -> Optional[int]:
    """An int from an int, a finite float or a digit string; None otherwise (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 20:
        return int(value.strip())
    return None
