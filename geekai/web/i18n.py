"""Simplified Chinese and English for the pages: chosen by ?lang=, a cookie, or Accept-Language."""
from __future__ import annotations

from flask import g, request

LANGUAGES = ("zh", "en")

TEXT = {
    "title": {"zh": "GeekAI 微信机器人状态", "en": "GeekAI WeChat bot status"},
    "service_up": {"zh": "服务运行中", "en": "Service is up"},
    "bot_online": {"zh": "机器人在线", "en": "Bot is online"},
    "bot_offline": {"zh": "机器人未在线", "en": "Bot is not online"},
    "state": {"zh": "状态", "en": "State"},
    "reason": {"zh": "原因", "en": "Reason"},
    "since": {"zh": "开始于", "en": "Since"},
    "account": {"zh": "账号", "en": "Account"},
    "next_retry": {"zh": "下次重试", "en": "Next retry"},
    "qr_expires": {"zh": "二维码过期时间", "en": "QR expires at"},
    "scan_hint": {"zh": "请用手机微信扫描此二维码登录", "en": "Scan this QR with WeChat on your phone to log in"},
    "confirm_hint": {"zh": "已扫码，请在手机上确认登录", "en": "Scanned: confirm the login on your phone"},
    "history": {"zh": "状态历史", "en": "History"},
    "time": {"zh": "时间", "en": "Time"},
    "change": {"zh": "变化", "en": "Change"},
    "by": {"zh": "操作者", "en": "By"},
    "login": {"zh": "登录 / 立即重试", "en": "Log in / retry now"},
    "logout": {"zh": "退出微信", "en": "Log out of WeChat"},
    "stop": {"zh": "停止", "en": "Stop"},
    "start": {"zh": "启动", "en": "Start"},
    "admin_login": {"zh": "管理员登录", "en": "Admin login"},
    "admin_logout": {"zh": "退出管理", "en": "Sign out"},
    "password": {"zh": "密码", "en": "Password"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "wrong_password": {"zh": "密码错误", "en": "Wrong password"},
    "too_many": {"zh": "失败次数过多，请稍后再试", "en": "Too many failed attempts; try again later"},
    "admin_only": {"zh": "二维码、账号和历史仅管理员可见。", "en": "The QR, account and history are shown to the admin only."},
    "language": {"zh": "English", "en": "中文"},
    "disabled": {"zh": "已禁用", "en": "disabled"},
    "stopped": {"zh": "已停止", "en": "stopped"},
    "starting": {"zh": "正在连接微信", "en": "starting"},
    "waiting_for_scan": {"zh": "等待扫码", "en": "waiting for scan"},
    "waiting_for_confirm": {"zh": "等待手机确认", "en": "waiting for confirm"},
    "logged_in": {"zh": "已登录", "en": "logged in"},
    "retrying": {"zh": "等待重试", "en": "retrying"},
    "needs_login": {"zh": "需要重新登录", "en": "needs login"},
    "error": {"zh": "错误", "en": "error"},
}


def choose_language() -> str:
    """?lang= wins, then the lang cookie, then the browser's Accept-Language."""
    asked = request.args.get("lang") or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(["zh-CN", "zh", "en"], default="zh")[:2]


def translate(key: str) -> str:
    entry = TEXT.get(key)
    return entry[g.get("lang", "zh")] if entry else key


def init_app(app) -> None:
    """Make `_` and `lang` available to templates."""

    @app.context_processor
    def inject():
        g.lang = g.get("lang") or choose_language()
        return {"_": translate, "lang": g.lang, "other_lang": "en" if g.lang == "zh" else "zh"}

    @app.after_request
    def remember(response):
        asked = request.args.get("lang")
        if asked in LANGUAGES:
            response.set_cookie("lang", asked, max_age=365 * 86400, samesite="Lax")
        return response
