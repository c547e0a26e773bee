"""Tests for geekai.payments.parser: fixtures of each notice shape, edge cases, hostile input."""
import html
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

# The package is not installed in the venv; make the repo root importable when no conftest does.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geekai.payments.parser import (  # noqa: E402
    ParsedNotice,
    amount_to_str,
    is_payment_sender,
    parse_notice,
    to_cents,
)

FIXTURES = ROOT / "tests" / "fixtures" / "payments"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.xml"))
RECEIPTS = [n for n in FIXTURE_NAMES if EXPECTED[n]["kind"] == "receipt"]
RAW_RECEIPTS = [n for n in RECEIPTS if "escaped" not in n]


def load(name):
    """A fixture's text, byte for byte."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def essence(p):
    """The fields that must not depend on how the content was transported."""
    return (p.kind, p.amount_cents, p.note, p.tx_id, p.received_at, p.title)


def notice(amount="￥12.00", title="微信支付收款", note=None, url_id="10000499012023010101316800000099",
           extra_lines="汇总今日第1笔收款"):
    """A minimal 2021-shaped receipt with the given parts."""
    lines = [f"收款金额{amount}"] + ([f"付款方备注{note}"] if note is not None else []) + [extra_lines]
    des = "\n".join(lines)
    path = f"pages/customerDetails/customerDetails.html?id={url_id}&create_time=1700000000&report=msg_detail"
    return (f"<msg><appmsg appid=\"\" sdkver=\"0\"><title><![CDATA[{title}]]></title>"
            f"<des><![CDATA[{des}]]></des><url><![CDATA[https://payapp.weixin.qq.com/payf2f/jumpf2fbill"
            f"?timestamp=1700000000&openid=x]]></url><mmreader><template_header><pub_time>1700000000</pub_time>"
            f"</template_header><template_detail><opitems><opitem><weapp_path><![CDATA[{path}]]></weapp_path>"
            f"</opitem></opitems></template_detail></mmreader></appmsg></msg>")


# --- fixtures -------------------------------------------------------------------------------

def test_every_fixture_has_an_expectation():
    assert set(FIXTURE_NAMES) == set(EXPECTED)
    kinds = {e["kind"] for e in EXPECTED.values()}
    assert kinds == {"receipt", "ignored", "unparsed"}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_parses_as_expected(name):
    want = EXPECTED[name]
    content = load(name)
    p = parse_notice(content)
    assert (p.kind, p.amount_cents, p.note, p.tx_id) == (
        want["kind"], want["amount_cents"], want["note"], want["tx_id"])
    assert p.raw == content
    if p.kind == "receipt":
        assert p.reason == ""
        assert p.title
        assert isinstance(p.amount_cents, int) and p.amount_cents > 0
    else:
        assert want["reason_contains"] and want["reason_contains"] in p.reason
    if want["received_at"]:
        assert p.received_at == datetime.fromisoformat(want["received_at"])


@pytest.mark.parametrize("name", RECEIPTS)
def test_received_at_is_utc_aware(name):
    p = parse_notice(load(name))
    assert p.received_at is not None and p.received_at.utcoffset().total_seconds() == 0


# --- transport variants -----------------------------------------------------------------------

@pytest.mark.parametrize("name", RAW_RECEIPTS)
def test_escaped_and_raw_give_the_same_parse(name):
    raw = load(name)
    escaped = html.escape(raw, quote=False)
    assert essence(parse_notice(escaped)) == essence(parse_notice(raw))


def test_web_escaped_fixture_equals_its_unescaped_form():
    escaped = load("receipt_2018_web_escaped_note.xml")
    raw = html.unescape(escaped).replace("<br/>", "\n")
    assert essence(parse_notice(raw)) == essence(parse_notice(escaped))


@pytest.mark.parametrize("prefix", [
    "@0a1b2c3d4e5f:\n", "@0a1b2c3d4e5f:<br/>", "<br/>", "wxid_abc123:\n", "\n  ", "\ufeff",
])
@pytest.mark.parametrize("name", ["receipt_2023_weapp_path_id.xml", "receipt_2018_web_escaped_note.xml"])
def test_prefixed_content_gives_the_same_parse(prefix, name):
    content = load(name)
    base = parse_notice(content)
    p = parse_notice(prefix + content)
    assert essence(p) == essence(base)
    assert p.raw == prefix + content


def test_trailing_junk_after_msg_is_ignored():
    content = load("receipt_no_note.xml")
    assert essence(parse_notice(content + "\n<br/>trailing")) == essence(parse_notice(content))


def test_bytes_content_is_decoded():
    content = load("receipt_fullwidth_yen.xml")
    assert essence(parse_notice(content.encode("utf-8"))) == essence(parse_notice(content))


# --- amounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, cents", [
    ("￥0.01", 1), ("¥0.01", 1), ("¥ 0.01", 1), ("￥12", 1200), ("￥12.5", 1250), ("￥12.50", 1250),
    ("￥1,234.56", 123456), ("¥1,234,567.00", 123456700), ("：￥3.00", 300),
])
def test_amounts_are_exact_cents(amount, cents):
    p = parse_notice(notice(amount=amount))
    assert p.kind == "receipt" and p.amount_cents == cents


@pytest.mark.parametrize("amount, reason", [
    ("￥1.234", "more than 2 decimals"), ("￥0.001", "more than 2 decimals"), ("￥0.00", "not positive"),
    ("￥0", "not positive"), ("￥-1.00", "not positive"), ("￥1,23.40", "malformed"), ("￥12,", "malformed"),
    ("￥9999999999999.00", "too large"), ("", "no 收款金额"), ("￥", "no 收款金额"), ("$1.00", "no 收款金额"),
])
def test_bad_amounts_are_unparsed_with_reason(amount, reason):
    p = parse_notice(notice(amount=amount))
    assert p.kind == "unparsed" and p.amount_cents is None
    assert reason in p.reason


def test_title_amount_must_agree_with_des():
    p = parse_notice(notice(amount="￥1.00", title="微信支付收款2.00元(朋友到店)"))
    assert p.kind == "unparsed" and "mismatch" in p.reason


def test_amount_falls_back_to_template_lines():
    content = load("receipt_2023_weapp_path_id.xml").replace("收款金额￥25.00\n", "", 1)
    p = parse_notice(content)
    assert (p.kind, p.amount_cents) == ("receipt", 2500)


def test_amount_to_str():
    assert [amount_to_str(c) for c in (0, 1, 10, 100, 1234, 123456, -5)] == [
        "0.00", "0.01", "0.10", "1.00", "12.34", "1234.56", "-0.05"]
    for bad in (1.5, "12", None, True):
        with pytest.raises(TypeError):
            amount_to_str(bad)


# --- notes, ids, times ------------------------------------------------------------------------

@pytest.mark.parametrize("note, expected", [
    ("GK7Q2M", "GK7Q2M"), ("  spaced out  ", "spaced out"), ("：GK1", "GK1"), ("订单汇总说明 42", "订单汇总说明 42"),
    ("", ""), ("请尽快退款", "请尽快退款"),
])
def test_payer_note(note, expected):
    p = parse_notice(notice(note=note))
    assert p.kind == "receipt" and p.note == expected  # a note never changes the kind


def test_flattened_des_note_stops_at_next_label():
    content = notice(note="GK5").replace("\n", "")
    assert parse_notice(content).note == "GK5"


def test_trans_id_is_preferred_over_id():
    content = notice().replace("report=msg_detail", "report=msg_detail&amp;trans_id=4200001234567890123456")
    assert parse_notice(content).tx_id == "4200001234567890123456"


@pytest.mark.parametrize("bad_id", ["", "12", "abc def ghij", "x" * 65, "1234567'; DROP TABLE"])
def test_implausible_ids_are_not_transaction_ids(bad_id):
    p = parse_notice(notice(url_id=bad_id))
    assert p.kind == "unparsed" and "no transaction id" in p.reason


@pytest.mark.parametrize("create_time, expected", [
    (1700000100, 1700000100), (1700000100000, 1700000100), ("1700000100", 1700000100),
    (None, 1700000000), (True, 1700000000), (-5, 1700000000), ("soon", 1700000000), (10**30, 1700000000),
])
def test_received_at(create_time, expected):
    p = parse_notice(notice(), create_time=create_time)
    assert p.received_at == datetime.fromtimestamp(expected, tz=timezone.utc)


# --- hostile and garbage input ----------------------------------------------------------------

GARBAGE = [
    None, "", "   ", "\x00" * 64, b"\xff\xfe\x00garbage", 12345, 3.5, [], {}, object(),
    "hello", "<", "<msg>", "<msg><appmsg>", "<<<>>>", "</msg>", "<msg></msg>", "<msg><appmsg></appmsg></msg>",
    "<?xml version='1.0'?>", "&lt;msg&gt;&lt;appmsg&gt;", "<msg><appmsg><title>x</title></appmsg>",
    "<msg><appmsg><des>收款金额￥1.00</des></appmsg></msg>",  # receipt-looking but no tx id
    "<msg>" + "<a>" * 40000 + "</a>" * 40000 + "</msg>", "x" * 5_000_000,
    "<msg><appmsg><title>&undefined;</title></appmsg></msg>",
    '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><msg>&x;</msg>',
]


@pytest.mark.parametrize("content", GARBAGE, ids=lambda c: repr(c)[:40])
def test_garbage_never_raises_and_is_unparsed(content):
    p = parse_notice(content)
    assert isinstance(p, ParsedNotice)
    assert p.kind == "unparsed" and p.reason
    assert p.amount_cents is None and p.tx_id is None


@pytest.mark.parametrize("transform", [lambda s: s, lambda s: html.escape(s, quote=False)],
                         ids=["raw", "escaped"])
def test_entity_expansion_is_refused_quickly(transform):
    started = time.monotonic()
    p = parse_notice(transform(load("entity_bomb.xml")))
    assert p.kind == "unparsed" and "DTD" in p.reason
    assert time.monotonic() - started < 0.5


def test_lowercase_doctype_is_refused_too():
    content = "<!doctype msg>" + notice()
    assert parse_notice(content).kind == "unparsed"


# --- sender check -----------------------------------------------------------------------------

@pytest.mark.parametrize("contact, expected", [
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": 24}, True),
    ({"UserName": "@a1b2", "NickName": "微信收款助手", "VerifyFlag": 8}, True),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": 29, "Alias": "wxzhifu"}, True),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": 56}, True),
    ({"UserName": "@a1b2", "NickName": " 微信支付 ", "VerifyFlag": 24}, True),      # padded nickname
    ({"UserName": "@a1b2", "NickName": "微信", "VerifyFlag": 24}, False),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": "24"}, True),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": 0}, False),       # friend namesake
    ({"UserName": "@a1b2", "NickName": "微信收款助手", "VerifyFlag": 0}, False),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": 16}, False),      # bit 8 not set
    ({"UserName": "@@room", "NickName": "微信支付", "VerifyFlag": 24}, False),     # a group
    ({"UserName": "wxid_x", "NickName": "微信支付", "VerifyFlag": 24}, False),
    ({"UserName": "@a1b2", "NickName": "微信支付官方", "VerifyFlag": 24}, False),
    ({"UserName": "@a1b2", "NickName": "微信支付", "VerifyFlag": True}, False),
    ({"UserName": "@a1b2", "NickName": "微信支付"}, False),                        # missing flag
    ({"NickName": "微信支付", "VerifyFlag": 24}, False),
    ({"UserName": "@a1b2", "VerifyFlag": 24}, False),
    ({"UserName": None, "NickName": None, "VerifyFlag": None}, False),
    ({}, False), (None, False), ("微信支付", False), (["@a", "微信支付", 24], False),
])
def test_is_payment_sender(contact, expected):
    assert is_payment_sender(contact) is expected


@pytest.mark.parametrize("text, grouped, cents", [
    ("12", False, 1200), ("0.5", False, 50), ("12.00", False, 1200), ("1,234.56", True, 123456),
    ("9999999999.99", False, 999999999999),
])
def test_to_cents(text, grouped, cents):
    assert to_cents(text, grouped=grouped) == cents


@pytest.mark.parametrize("text, grouped, reason", [
    ("1e2", False, "malformed"), ("1E2", True, "malformed"), ("1_000", False, "malformed"), ("NaN", False, "malformed"),
    ("Infinity", False, "malformed"), ("１２", False, "malformed"), (" 12", False, "malformed"), ("+5", False, "malformed"),
    (".5", False, "malformed"), ("1,234.56", False, "malformed"), ("1.234", False, "more than 2 decimals"),
    ("0", False, "not positive"), ("-1", False, "not positive"), ("10000000000.00", False, "too large"),
    ("9" * 5000, False, "too large"), (12, False, "malformed"), (None, False, "malformed"),
])
def test_to_cents_refuses_with_the_reason(text, grouped, reason):
    with pytest.raises(ValueError, match=reason):
        to_cents(text, grouped=grouped)


@pytest.mark.parametrize("content", [
    notice().replace("收款金额", "收款\ud800金额"),                      # lone surrogate
    notice().replace("https://payapp", "https://[payapp"),              # urlsplit: Invalid IPv6 URL
])
def test_inputs_that_once_reached_the_safety_net(content):
    p = parse_notice(content)
    assert p.kind in ("unparsed", "receipt") and not p.reason.startswith("parser error")
