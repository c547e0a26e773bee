"""Every reason a person reads, in Simplified Chinese and English: the bot's history and state, alert
incidents, rejected payment notices, and who acted ("by").

The bot, its adapters and the payment recorder write their reasons in English (the API keeps that
text for scripts). This catalogue is the data that names each kind of reason: a code, the English
pattern (`{name}` marks a parameter) and its Chinese form. `describe` finds a text's code and
parameters, so rows written before the catalogue existed are rendered like new ones; `render` gives
the text in a language. A parameter whose name ends in `_reason` is itself a reason, rendered too
(a reason with "; now: ..." or a note in parentheses). Technical details (an HTTP path, an error
from the network library, what WeChat sent) stay as they came.

tests/test_reasons.py renders every code in both languages, and checks that each reason the test
suite's flows produce has a code.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

LANGUAGES = ("zh", "en")

# (code, English pattern, Chinese). The first pattern that matches the whole text wins: specific
# ones before general ones.
CATALOGUE: tuple[tuple[str, str, str], ...] = (
    # -- several at once (an alert incident: how it began and what holds now) -------------------
    ("then_now", "{first_reason}; now: {now_reason}", "{first_reason}；现在：{now_reason}"),
    # -- what the bot does and waits for ------------------------------------------------------
    ("service_started", "service started", "服务已启动"),
    ("service_started_pid", "service started (pid {pid})", "服务已启动（进程 {pid}）"),
    ("service_stopping", "service shutting down", "服务正在关闭"),
    ("bot_disabled", "BOT_ENABLED is false", "配置中已禁用机器人（BOT_ENABLED=false）"),
    ("connecting", "connecting to WeChat", "正在连接微信"),
    ("scan_qr_note", "scan the QR with WeChat ({note_reason})", "请用微信扫描二维码（{note_reason}）"),
    ("scan_qr", "scan the QR with WeChat", "请用微信扫描二维码"),
    ("qr_refreshed", "QR expired; new QR (refresh {n})", "二维码已过期，已换新二维码（第 {n} 次刷新）"),
    ("confirm_push", "confirm the login on your phone (login request sent to the phone)",
     "请在手机上确认登录（登录请求已推送到手机）"),
    ("confirm_on_phone", "confirm the login on your phone", "请在手机上确认登录"),
    ("enter_code", "enter the number shown on the phone", "请输入手机上显示的数字"),
    ("code_wrong", "the code did not match: enter the number shown on the phone again",
     "验证码不对：请重新输入手机上显示的数字"),
    ("code_entered", "verification code entered by {actor}; checking it", "{actor}已输入验证码，正在核对"),
    ("logged_in_as", "logged in as {account}", "已登录：{account}"),
    # -- what a person asked for -------------------------------------------------------------------
    ("requested", "{command} requested by {actor}", "{actor}请求{command}"),
    ("stopped_by", "stopped by {actor}", "{actor}停止了机器人"),
    ("logged_out_by_admin", "logged out by admin", "管理员退出了微信登录"),
    # -- the bot lease (one bot per deployment) ----------------------------------------------------
    ("lease_taken_stopped", "{owner} runs the bot now (lease epoch {epoch}): the lease of {previous} stopped",
     "现在由 {owner} 运行机器人（租约第 {epoch} 代）：{previous} 的租约已正常释放"),
    ("lease_taken_expired", "{owner} runs the bot now (lease epoch {epoch}): the lease of {previous} expired",
     "现在由 {owner} 运行机器人（租约第 {epoch} 代）：{previous} 的租约已过期"),
    ("lease_taken_gone", "{owner} runs the bot now (lease epoch {epoch}): the lease of {previous} ended without a "
                         "clean stop", "现在由 {owner} 运行机器人（租约第 {epoch} 代）：{previous} 的租约未正常释放就结束了"),
    ("lease_taken", "{owner} runs the bot now (lease epoch {epoch}): the lease of {previous} ended",
     "现在由 {owner} 运行机器人（租约第 {epoch} 代）：{previous} 的租约已结束"),
    ("lease_lost", "this process lost the bot lease", "本进程失去了机器人租约"),
    # -- failures at login ---------------------------------------------------------------------------
    ("qr_unscanned_once", "the login QR expired once with nobody scanning it", "登录二维码过期了 1 次，一直无人扫码"),
    ("qr_unscanned", "the login QR expired {n} times with nobody scanning it", "登录二维码过期了 {n} 次，一直无人扫码"),
    ("wechat_refused_login", "WeChat refused the web login for this account (ret {ret}): {text}",
     "微信拒绝该账号登录网页版（ret {ret}）：{text}"),
    ("wechat_http", "WeChat answered HTTP {status} for {path}", "微信服务器对 {path} 返回了 HTTP {status}"),
    ("wechat_timeout_path", "WeChat did not answer {path} within {seconds} s", "微信服务器在 {seconds} 秒内没有响应 {path}"),
    ("wechat_timeout_at", "WeChat ({url}) did not answer within {seconds} s", "微信服务器（{url}）在 {seconds} 秒内没有响应"),
    ("wechat_timeout", "WeChat did not answer within {seconds} s", "微信服务器在 {seconds} 秒内没有响应"),
    ("wechat_unreachable", "cannot reach WeChat at {url}: {error}", "无法连接微信服务器 {url}：{error}"),
    ("wechat_garbage_path", "unexpected answer from WeChat for {path}: {answer}", "微信服务器对 {path} 的回应无法识别：{answer}"),
    ("wechat_garbage", "unexpected answer from WeChat: {answer}", "微信服务器的回应无法识别：{answer}"),
    ("wechat_garbage_login_page", "unexpected login page from WeChat: {answer}", "微信返回的登录页无法识别：{answer}"),
    ("synccheck_garbage", "unexpected synccheck answer (HTTP {status})", "微信同步检查的回应无法识别（HTTP {status}）"),
    ("connection_lost_login", "lost the connection to WeChat during login: {error}", "登录过程中与微信的连接中断：{error}"),
    ("connection_lost_login_short", "lost the connection to WeChat during login", "登录过程中与微信的连接中断"),
    ("connection_lost", "lost the connection to WeChat", "与微信的连接中断"),
    ("session_ended_retcode", "WeChat ended the session (synccheck retcode {retcode})", "微信结束了会话（synccheck retcode {retcode}）"),
    ("session_ended_ret", "WeChat ended the session (webwxsync Ret {ret})", "微信结束了会话（webwxsync Ret {ret}）"),
    ("session_ended", "WeChat ended the session", "微信结束了会话"),
    ("cache_set_aside", "the saved session {problem}, so it was set aside", "保存的登录会话{problem}，已移到一旁"),
    ("wxpy_missing", "wxpy is not installed", "没有安装 wxpy"),
    ("wxpy_missing_short", "wxpy is missing", "缺少 wxpy"),
    # -- the watchdog ------------------------------------------------------------------------------
    ("watchdog_silent", "watchdog: no sync with WeChat for {seconds} s (limit {limit} s)",
     "看门狗：已 {seconds} 秒没有与微信同步（上限 {limit} 秒）"),
    ("watchdog_silent_ilink", "watchdog: no answer from iLink for {seconds} s (limit {limit} s)",
     "看门狗：iLink 已 {seconds} 秒没有回应（上限 {limit} 秒）"),
    ("watchdog_listener_died", "watchdog: the message listener thread died", "看门狗：消息接收线程已退出"),
    ("watchdog_restarts", "{n} watchdog restarts within an hour; last: {last_reason}",
     "一小时内看门狗重启了 {n} 次；最近一次：{last_reason}"),
    # -- iLink -------------------------------------------------------------------------------------
    ("ilink_expired", "the iLink session expired ({call} answered {code}): scan a new QR to log in again",
     "iLink 会话已过期（{call} 返回 {code}）：请扫描新的二维码重新登录"),
    ("ilink_http", "iLink answered HTTP {status} for {call}", "iLink 对 {call} 返回了 HTTP {status}"),
    ("ilink_timeout", "iLink did not answer {call} within {seconds} s", "iLink 在 {seconds} 秒内没有响应 {call}"),
    ("ilink_unreachable", "cannot reach iLink at {host} ({call}): {error}", "无法连接 iLink {host}（{call}）：{error}"),
    ("ilink_garbage", "unexpected answer from iLink for {call}: {answer}", "iLink 对 {call} 的回应无法识别：{answer}"),
    ("ilink_bound_elsewhere", "iLink says this WeChat bot is already connected to another client (binded_redirect): "
                              "disconnect it there, then log in again here",
     "iLink 表示这个微信机器人已连接到另一个客户端（binded_redirect）：请先在那边断开，再回到这里登录"),
    # -- payment notices -----------------------------------------------------------------------------
    ("forged_receipt", "a receipt from {name} ({sender}, VerifyFlag {flag}), which is not WeChat's verified "
                       "微信支付/微信收款助手 official account",
     "收款通知来自 {name}（{sender}，VerifyFlag {flag}），不是微信官方认证的“微信支付/微信收款助手”公众号"),
    ("forged_notice", "a {kind} notice from {name} ({sender}, VerifyFlag {flag}), which is not WeChat's verified "
                      "微信支付/微信收款助手 official account",
     "{kind}通知来自 {name}（{sender}，VerifyFlag {flag}），不是微信官方认证的“微信支付/微信收款助手”公众号"),
    ("duplicate_amounts", "transaction {tx_id} already recorded (payment {payment}); amounts differ ({a} vs {b} cents)",
     "交易 {tx_id} 已记录过（收款 {payment}）；金额不同（{a} 与 {b} 分）"),
    ("duplicate", "transaction {tx_id} already recorded (payment {payment})", "交易 {tx_id} 已记录过（收款 {payment}）"),
    ("notice_refund", "refund notice", "退款通知"),
    ("notice_outgoing", "outgoing payment or service notice", "付款或服务通知（不是收款）"),
    ("notice_merchant", "merchant transfer (商家转账), not a customer payment", "商家转账，不是顾客付款"),
    ("notice_not_receipt", "not a receipt notice", "不是收款通知"),
    ("notice_no_amount", "no 收款金额 amount found", "没有找到“收款金额”"),
    ("notice_amount_mismatch", "amount mismatch: title {title} vs des {des}", "金额不一致：标题 {title}，正文 {des}"),
    ("notice_no_tx", "no transaction id (no id/trans_id in url or weapp_path)", "没有交易单号（url 或 weapp_path 里没有 id/trans_id）"),
    ("notice_no_appmsg", "no appmsg element", "没有 appmsg 元素"),
    ("notice_no_title", "app message without title or des", "应用消息没有标题或正文"),
    ("notice_empty", "empty content", "内容为空"),
    ("notice_too_large", "content too large ({n} chars)", "内容过长（{n} 个字符）"),
    ("notice_dtd", "DTD/entity declarations are not allowed", "不允许 DTD/实体声明"),
    ("notice_not_xml", "not an XML app message", "不是 XML 应用消息"),
    ("notice_bad_xml", "malformed XML: {error}", "XML 格式错误：{error}"),
    ("notice_parser_error", "parser error: {error}", "解析出错：{error}"),
)

# Who acted, in the history's "by" column.
ACTORS = {
    "bot": {"zh": "机器人", "en": "bot"},
    "system": {"zh": "系统", "en": "system"},
    "watchdog": {"zh": "看门狗", "en": "watchdog"},
    "lease": {"zh": "租约", "en": "lease"},
    "admin": {"zh": "管理员", "en": "admin"},
    "admin (web)": {"zh": "管理员（网页）", "en": "admin (web)"},
    "api token": {"zh": "API 令牌", "en": "api token"},
}
# What an alert incident is about (the alert card's incident line).
INCIDENT_KINDS = {
    "down": {"zh": "机器人掉线", "en": "bot offline"},
    "needs_login": {"zh": "需要登录", "en": "needs a login"},
    "error": {"zh": "出错", "en": "failed"},
    "flapping": {"zh": "反复重启", "en": "keeps restarting"},
}
# Words inside reasons: the commands of "{command} requested by {actor}" and a lease's end.
WORDS = {
    "login": {"zh": "登录", "en": "login"}, "start": {"zh": "启动", "en": "start"},
    "new QR": {"zh": "新二维码", "en": "new QR"},
    "ignored": {"zh": "无需记账的", "en": "ignored"}, "unparsed": {"zh": "无法解析的", "en": "unparsed"},
    "unreadable": {"zh": "无法读取", "en": "unreadable"},
}
# Parameters that name an actor or a word: translated as such.
_ACTOR_PARAMS = ("actor",)
_WORD_PARAMS = ("command", "kind")


@dataclass(frozen=True)
class Reason:
    code: str
    params: dict


@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, re.Pattern], ...]:
    compiled = []
    for code, english, _ in CATALOGUE:
        parts = re.split(r"\{(\w+)\}", english)
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
        compiled.append((code, re.compile(regex, re.DOTALL)))
    return tuple(compiled)


@functools.lru_cache(maxsize=1)
def _templates() -> dict[str, dict[str, str]]:
    return {code: {"en": english, "zh": chinese} for code, english, chinese in CATALOGUE}


@functools.lru_cache(maxsize=4096)
def describe(text: str) -> Reason | None:
    """The code and parameters of a reason text, or None when no pattern matches it."""
    for code, pattern in _patterns():
        found = pattern.fullmatch(text or "")
        if found:
            return Reason(code, found.groupdict())
    return None


def code_of(text: str) -> str:
    """The reason's code ("" for an empty reason, "other" for one the catalogue lacks)."""
    if not text:
        return ""
    reason = describe(text)
    return reason.code if reason else "other"


def render(text: str, lang: str) -> str:
    """The reason in `lang` ("zh" or "en"); a text the catalogue lacks stays as it is."""
    if lang == "en" or not text:
        return text
    reason = describe(text)
    if reason is None:
        return text
    params = {name: _param(name, value, lang) for name, value in reason.params.items()}
    return _templates()[reason.code][lang].format(**params)


def _param(name: str, value: str, lang: str) -> str:
    if name.endswith("_reason"):
        return render(value, lang)
    if name in _ACTOR_PARAMS:
        return actor(value, lang)
    if name in _WORD_PARAMS or name == "problem":
        return _words(value, lang)
    return value


def _words(value: str, lang: str) -> str:
    if value in WORDS:
        return WORDS[value][lang]
    # the saved session "unreadable (UnpicklingError: ...)": the word, then the detail as it came
    head, sep, rest = value.partition(" ")
    return WORDS[head][lang] + sep + rest if head in WORDS else value


def actor(name: str, lang: str) -> str:
    """Who acted, in `lang`."""
    return ACTORS.get(name, {}).get(lang, name)


def annotate(row: dict) -> dict:
    """A state, event or incident as the API gives it, with its reason's code and parameters and
    the Chinese forms the page shows (the English text stays in `reason`)."""
    reason = describe(row.get("reason") or "")
    extra = {"reason_code": code_of(row.get("reason") or ""), "reason_params": reason.params if reason else {},
             "reason_zh": render(row.get("reason") or "", "zh")}
    if "actor" in row:
        extra["actor_zh"] = actor(row["actor"], "zh")
    if "kind" in row:
        extra["kind_zh"] = INCIDENT_KINDS.get(row["kind"], {}).get("zh", row["kind"])
        extra["kind_en"] = INCIDENT_KINDS.get(row["kind"], {}).get("en", row["kind"])
    return row | extra


def annotate_alerts(summary: dict) -> dict:
    """The alert card's summary with its open incident annotated."""
    incident = summary.get("incident")
    return summary | {"incident": annotate(incident) if incident else None}


def init_app(app) -> None:
    """`|reason` and `|actor` in templates: the text in the page's language."""
    from flask import g

    app.add_template_filter(lambda text: render(text or "", g.get("lang", "zh")), "reason")
    app.add_template_filter(lambda name: actor(name or "", g.get("lang", "zh")), "actor")
    app.add_template_filter(lambda kind: INCIDENT_KINDS.get(kind, {}).get(g.get("lang", "zh"), kind), "incident_kind")
