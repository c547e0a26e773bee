"""Simplified Chinese and English for the pages: chosen by ?lang=, a cookie, or Accept-Language."""
from __future__ import annotations

from urllib.parse import urlencode

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
    "attempt": {"zh": "连续失败", "en": "Failures in a row"},
    "next_retry": {"zh": "下次重试", "en": "Next retry"},
    "retry_in": {"zh": "{t} 后重试", "en": "retrying in {t}"},
    "qr_expires": {"zh": "二维码过期时间", "en": "QR expires at"},
    "qr_expires_in": {"zh": "二维码将在 {t} 后过期", "en": "The QR expires in {t}"},
    "qr_expired_wait": {"zh": "二维码已过期，正在获取新的二维码…", "en": "The QR expired; fetching a new one…"},
    "scan_hint": {"zh": "请用手机微信扫描此二维码登录", "en": "Scan this QR with WeChat on your phone to log in"},
    "confirm_hint": {"zh": "已扫码，请在手机上确认登录", "en": "Scanned: confirm the login on your phone"},
    "confirm_step": {"zh": "在手机微信弹出的页面上点击「登录」。", "en": "On your phone, tap “Log in” on the page WeChat shows."},
    "verify_hint": {"zh": "手机上显示了一个数字，请在这里输入它", "en": "Your phone shows a number: type it in here"},
    "verify_label": {"zh": "验证码", "en": "Verification code"},
    "verify_send": {"zh": "提交验证码", "en": "Submit the code"},
    "verify_wrong": {"zh": "验证码不对：请核对手机上的数字后重新输入", "en": "That code did not match: check the number on the phone and enter it again"},
    "verify_checking": {"zh": "正在核对验证码…", "en": "Checking the code…"},
    "logged_in_as": {"zh": "已登录账号", "en": "Logged in as"},
    "needs_login_hint": {"zh": "机器人在等待重新登录：点「获取新二维码」后用微信扫码。为什么需要登录，见下方的“原因”。",
                         "en": "The bot is waiting for a new login: press Get a new QR and scan it with WeChat. Why it needs one: see the reason below."},
    "get_new_qr": {"zh": "获取新二维码", "en": "Get a new QR"},
    "starting_hint": {"zh": "正在连接微信…", "en": "Connecting to WeChat…"},
    "stopped_hint": {"zh": "机器人已停止，点击「启动」重新运行。", "en": "The bot is stopped; press Start to run it."},
    "error_hint": {"zh": "机器人遇到无法自动恢复的错误，请检查配置后重试。", "en": "The bot hit an error it cannot recover from by itself; check the configuration, then retry."},
    "disabled_hint": {"zh": "配置中已禁用机器人（BOT_ENABLED=false）。", "en": "The bot is disabled in the configuration (BOT_ENABLED=false)."},
    "retry_now": {"zh": "立即重试", "en": "Retry now"},
    "details": {"zh": "详细信息", "en": "Details"},
    "history": {"zh": "状态历史", "en": "History"},
    "older": {"zh": "更早的记录", "en": "Older entries"},
    "no_more": {"zh": "没有更早的记录", "en": "No older entries"},
    "time": {"zh": "时间", "en": "Time"},
    "time_zone": {"zh": "北京时间", "en": "China time, UTC+8"},
    "times_are": {"zh": "本站所有时间均为北京时间（UTC+8）。", "en": "All times here are China time (UTC+8), whatever this device's zone."},
    "change": {"zh": "变化", "en": "Change"},
    "by": {"zh": "操作者", "en": "By"},
    "counters": {"zh": "统计", "en": "Counters"},
    "last_24h": {"zh": "最近 24 小时", "en": "Last 24 h"},
    "last_7d": {"zh": "最近 7 天", "en": "Last 7 days"},
    "logins": {"zh": "登录次数", "en": "Logins"},
    "failures": {"zh": "故障次数", "en": "Failures"},
    "uptime": {"zh": "在线率", "en": "Uptime"},
    "controls": {"zh": "操作", "en": "Controls"},
    "alerts": {"zh": "告警", "en": "Alerts"},
    "alert_channels": {"zh": "告警渠道", "en": "Alert channels"},
    "no_alert_channel": {"zh": "未配置（设置 ALERT_WEBHOOK_URL、ALERT_WECOM_URL 等，机器人掉线时才会有人知道）",
                         "en": "none configured (set ALERT_WEBHOOK_URL, ALERT_WECOM_URL, ...: otherwise nobody hears of a dead bot)"},
    "open_incident": {"zh": "未解决的事件", "en": "Open incident"},
    "no_incident": {"zh": "无", "en": "none"},
    "alerts_waiting": {"zh": "待发送的告警", "en": "Alerts waiting to be sent"},
    "alerts_failed": {"zh": "发送失败的告警", "en": "Alerts that failed"},
    "see_deliveries": {"zh": "查看投递记录", "en": "see the deliveries"},
    "login": {"zh": "登录 / 立即重试", "en": "Log in / retry now"},
    "logout": {"zh": "退出微信", "en": "Log out of WeChat"},
    "stop": {"zh": "停止", "en": "Stop"},
    "start": {"zh": "启动", "en": "Start"},
    "confirm_logout": {"zh": "退出微信登录？机器人会忘记这次登录，之后需要重新扫码。（不是退出本页面的管理员登录）",
                       "en": "Log the bot out of WeChat? It forgets this login and needs a new scan. (This is not signing out of this page.)"},
    "confirm_stop": {"zh": "停止机器人？停止期间收不到消息和收款通知，直到点「启动」。",
                     "en": "Stop the bot? It receives no messages or payment notices until you press Start."},
    "connection_lost_since": {"zh": "与服务器的连接中断（自 {t} 起）：下面显示的是中断前的状态", "en": "Connection to the server lost since {t}: what follows is the state before"},
    "live": {"zh": "实时更新", "en": "Live"},
    "polling": {"zh": "定时刷新", "en": "Polling"},
    "offline": {"zh": "连接中断，正在重连…", "en": "Connection lost; reconnecting…"},
    "action_failed": {"zh": "操作未完成", "en": "The action did not go through"},
    "admin_login": {"zh": "管理员登录", "en": "Admin login"},
    "admin_logout": {"zh": "退出管理", "en": "Sign out"},
    "password": {"zh": "密码", "en": "Password"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "wrong_password": {"zh": "密码错误", "en": "Wrong password"},
    "too_many": {"zh": "失败次数过多，请稍后再试", "en": "Too many failed attempts; try again later"},
    "password_hint": {"zh": "密码在首次启动时随机生成，只在终端（日志）里打印一次；instance/secrets.json 里只存它的哈希，无法从中读出。"
                            "忘记了：设置环境变量 GEEKAI_ADMIN_PASSWORD 后重启。",
                      "en": "The password was generated at first start and printed once in the terminal (the log); instance/secrets.json "
                            "keeps only its hash, which cannot be read back. Forgot it? Set GEEKAI_ADMIN_PASSWORD and restart."},
    "admin_only": {"zh": "二维码、账号和历史仅管理员可见。", "en": "The QR, account and history are shown to the admin only."},
    "language": {"zh": "English", "en": "中文"},
    "phone": {"zh": "模拟手机（演示模式）", "en": "Simulated phone (demo mode)"},
    "phone_hint": {"zh": "演示模式下机器人登录内置的微信模拟器；这些按钮代替真实手机。",
                   "en": "In demo mode the bot logs in to a built-in WeChat emulator; these buttons stand in for a real phone."},
    "phone_hint_ilink": {"zh": "演示模式下机器人通过内置的 iLink 模拟器登录（腾讯官方的个人号机器人接口）；这些按钮代替真实手机。",
                         "en": "In demo mode the bot logs in to a built-in iLink emulator (Tencent's official bot API); these buttons stand in for a real phone."},
    "phone_scan": {"zh": "扫码", "en": "Scan"},
    "phone_scan_code": {"zh": "扫码（要求验证码）", "en": "Scan (asks for a code)"},
    "phone_code": {"zh": "手机上显示的验证码：{code}", "en": "The phone shows the code {code}"},
    "phone_expire_session": {"zh": "让会话过期（-14）", "en": "Expire the session (-14)"},
    "phone_confirm": {"zh": "确认登录", "en": "Confirm login"},
    "phone_expire": {"zh": "让二维码过期", "en": "Expire the QR"},
    "phone_logout": {"zh": "从手机退出", "en": "Log out from the phone"},
    "phone_send": {"zh": "发送", "en": "Send"},
    "phone_pay_hint": {"zh": "模拟一笔微信支付收款：备注里写上订单号即可让订单变为已支付；“伪造”由改名为“微信支付”的好友发出，会被拒收。",
                       "en": "Simulate a WeChat Pay receipt: put an order's code in the note to pay that order; "
                             "\"Forge\" sends it from a friend renamed 微信支付, and it is rejected."},
    "phone_amount": {"zh": "金额（元）", "en": "Amount (yuan)"},
    "phone_note": {"zh": "付款备注", "en": "Payer's note"},
    "phone_pay": {"zh": "发送收款通知", "en": "Send a payment notice"},
    "phone_forge": {"zh": "伪造一条", "en": "Forge one"},
    "phone_text": {"zh": "给机器人发消息", "en": "Text the bot"},
    "phone_delivered": {"zh": "机器人已收到", "en": "received by the bot"},
    "phone_pending": {"zh": "等待机器人接收", "en": "waiting for the bot"},
    "phone_idle": {"zh": "手机：无登录请求", "en": "Phone: no login request"},
    "phone_waiting_for_scan": {"zh": "手机：可以扫码", "en": "Phone: a QR is ready to scan"},
    "phone_scanned": {"zh": "手机：已扫码，等待确认", "en": "Phone: scanned, waiting for confirm"},
    "phone_need_code": {"zh": "手机：显示验证码，等待在页面上输入", "en": "Phone: shows a code to enter on the page"},
    "phone_pushed": {"zh": "手机：收到登录请求", "en": "Phone: login request received"},
    "phone_logged_in": {"zh": "手机：机器人已登录", "en": "Phone: the bot is logged in"},
    "phone_logged_out": {"zh": "手机：机器人已退出", "en": "Phone: the bot was logged out"},
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


def same_page(**changed) -> str:
    """This page's URL with some query arguments changed (the language switch keeps the filters)."""
    args = request.args.to_dict() | changed
    return request.path + "?" + urlencode(args)


def page_texts() -> dict:
    """Every text in the page's language, for the script that renders live updates."""
    lang = g.get("lang", "zh")
    return {key: entry[lang] for key, entry in TEXT.items()}


def init_app(app) -> None:
    """Make `_`, `lang` and the page's texts available to templates."""

    @app.context_processor
    def inject():
        g.lang = g.get("lang") or choose_language()
        return {"_": translate, "lang": g.lang, "other_lang": "en" if g.lang == "zh" else "zh",
                "page_texts": page_texts, "same_page": same_page}

    @app.after_request
    def remember(response):
        asked = request.args.get("lang") if b"lang=" in request.query_string else None
        if asked in LANGUAGES:
            response.set_cookie("lang", asked, max_age=365 * 86400, samesite="Lax")
        # The same URL answers in two languages.
        if "Vary" in response.headers:
            response.vary.update(("Accept-Language", "Cookie"))
        else:  # most answers: one header set, without parsing and rewriting it twice
            response.headers["Vary"] = "Accept-Language, Cookie"
        return response
