"""Alert messages in each receiver's format: generic JSON, WeCom, DingTalk, Feishu robots, mail."""
from __future__ import annotations

from dataclasses import dataclass

from ..db import isoformat, utcnow
from .models import Incident

OPENED, REMINDER, RESOLVED = "opened", "reminder", "resolved"
# One-off notices (not incidents): their kind -> title.
TEST, FORGED_PAYMENT = "test", "forged_payment"
NOTICE_TITLES = {
    TEST: "geekai: test alert (the bot is fine; this checks the channel)",
    FORGED_PAYMENT: "geekai: rejected a forged WeChat Pay notice",
}
# A line some notices add: forged notices are alerted once per sender and hour (payments/recorder.py).
NOTICE_NOTES = {
    FORGED_PAYMENT: "further forged notices from this sender within the hour are only listed on the payments page",
}

# channel name -> config key holding its webhook URL
WEBHOOKS = {
    "webhook": "ALERT_WEBHOOK_URL",
    "wecom": "ALERT_WECOM_URL",
    "dingtalk": "ALERT_DINGTALK_URL",
    "feishu": "ALERT_FEISHU_URL",
}


@dataclass(frozen=True)
class Outgoing:
    """One message for the outbox."""

    channel: str
    transport: str
    target: str
    payload: dict | str
    headers: dict | None = None

    @property
    def topic(self) -> str:
        return f"alert.{self.channel}"


def configured(config) -> list[str]:
    """The channels that have a destination, in a fixed order."""
    names = [name for name, key in WEBHOOKS.items() if config.get(key)]
    if config.get("ALERT_SMTP_URL") and config.get("ALERT_EMAIL_TO"):
        names.append("email")
    return names


def status_page(config) -> str:
    return config["PUBLIC_URL"].rstrip("/") + "/"


def title(incident: Incident, notice: str) -> str:
    if notice == RESOLVED:
        return f"geekai: WeChat bot back online (incident #{incident.id} closed)"
    headline = {"needs_login": "needs a login", "error": "has failed", "flapping": "keeps restarting"}
    what = headline.get(incident.kind, "is offline")
    prefix = "reminder: " if notice == REMINDER else ""
    return f"geekai: {prefix}WeChat bot {what} (incident #{incident.id})"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def facts(incident: Incident, notice: str, config) -> list[tuple[str, str]]:
    """The lines every format shows, as (label, value)."""
    now = utcnow()
    if notice == RESOLVED:
        return [("state", incident.state), ("reason", incident.close_reason or incident.reason),
                ("down for", _duration(((incident.closed_at or now) - incident.began_at).total_seconds())),
                ("status page", status_page(config))]
    return [("state", incident.state), ("reason", incident.reason or "-"),
            ("since", f"{isoformat(incident.began_at)} ({_duration((now - incident.began_at).total_seconds())} ago)"),
            ("status page", status_page(config))]


def text(heading: str, lines: list[tuple[str, str]]) -> str:
    return "\n".join([heading] + [f"{label}: {value}" for label, value in lines])


def build(incident: Incident, notice: str, config) -> list[Outgoing]:
    """One message per configured channel for this notice of an incident."""
    webhook = {"event": f"incident.{notice}", "incident": incident.to_dict(), "state": incident.state,
               "reason": incident.reason if notice != RESOLVED else incident.close_reason}
    return _messages(title(incident, notice), facts(incident, notice, config), webhook,
                     "info" if notice == RESOLVED else "warning", config)


def build_notice(kind: str, reason: str, config) -> list[Outgoing]:
    """One message per configured channel for a one-off notice (NOTICE_TITLES): no incident."""
    note = [("note", NOTICE_NOTES[kind])] if kind in NOTICE_NOTES else []
    lines = [("reason", reason), *note, ("at", isoformat(utcnow())), ("status page", status_page(config))]
    webhook = {"event": f"notice.{kind}", "reason": reason} | ({"note": NOTICE_NOTES[kind]} if note else {})
    return _messages(NOTICE_TITLES[kind], lines, webhook, "warning", config)


# Robots render markdown (WeCom) or markup (Feishu's <at>, links in every chat client): values
# from outside (a contact's nickname, WeChat's and receivers' error texts) go into their messages
# with these characters swapped for full-width look-alikes, which read the same and render as
# nothing. Backslash escapes would not do: not every robot honours them.
_INERT = str.maketrans({"\\": "＼", "*": "＊", "_": "＿", "`": "｀", "[": "［", "]": "］", "(": "（",
                        ")": "）", "<": "＜", ">": "＞", "#": "＃", "~": "～", "|": "｜", "!": "！",
                        "&": "＆", "\n": " ", "\r": " "})


def inert(value: str) -> str:
    """`value` unable to render as markup in a robot's message: no link, mention, emphasis, or
    bare URL (its "://" becomes "：//")."""
    return str(value).translate(_INERT).replace("://", "：//")


# Lines whose values geekai makes itself (a state name, a time, the configured status page URL).
_OWN_VALUES = frozenset({"state", "since", "down for", "at", "note", "status page"})


def _robot_lines(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lines with every value from outside (a reason) made inert."""
    return [(label, value if label in _OWN_VALUES else inert(value)) for label, value in lines]


def _messages(heading: str, lines: list[tuple[str, str]], webhook: dict, color: str, config) -> list[Outgoing]:
    plain = text(heading, lines)
    robot = text(heading, _robot_lines(lines))
    messages = []
    for channel in configured(config):
        if channel == "webhook":
            payload = webhook | {"status_page": status_page(config), "title": heading, "text": plain}
        elif channel == "wecom":
            payload = {"msgtype": "markdown", "markdown": {"content": _wecom_markdown(heading, _robot_lines(lines), color)}}
        elif channel == "dingtalk":
            payload = {"msgtype": "text", "text": {"content": robot}}
        elif channel == "feishu":
            payload = {"msg_type": "text", "content": {"text": robot}}
        else:
            messages.append(Outgoing("email", "smtp", "mailto:" + config["ALERT_EMAIL_TO"], plain,
                                     {"Subject": heading}))
            continue
        messages.append(Outgoing(channel, "http", config[WEBHOOKS[channel]], payload))
    return messages


def _wecom_markdown(heading: str, lines: list[tuple[str, str]], color: str) -> str:
    shown = [f"**{heading}**"]
    for label, value in lines:
        if label == "status page":
            shown.append(f"> [status page]({value})")
        elif label == "state":
            shown.append(f'> state: <font color="{color}">{value}</font>')
        else:
            shown.append(f"> {label}: {value}")
    return "\n".join(shown)
