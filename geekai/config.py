"""Configuration: defaults, loading order and validation of every key."""
from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


class ConfigError(Exception):
    """A configuration value is unusable; the message names the key and the expected form."""

    def __init__(self, key: str, expected: str, value: Any):
        super().__init__(f"config error: {key} must be {expected} (got {value!r})")
        self.key = key


DEFAULTS: dict[str, Any] = {
    "BOT_ENABLED": True,
    "BOT_BACKEND": "wxpy",
    "BOT_REQUIRED": False,
    "WECHAT_BASE_URL": "https://login.weixin.qq.com",
    # Tencent's official bot API for personal accounts (BOT_BACKEND=ilink).
    "ILINK_BASE_URL": "https://ilinkai.weixin.qq.com",
    "ILINK_TOKEN_FILE": "ilink-token.json",
    # How long getupdates may be held when iLink does not say (its longpolling_timeout_ms).
    "ILINK_POLL_SECONDS": 35,
    "BOT_LOGIN_TIMEOUT": 60,
    "BOT_RETRY_MAX_SECONDS": 300,
    "BOT_RETRY_FIRST_SECONDS": 5,
    "BOT_QR_MAX_REFRESH": 10,
    # Web WeChat does not announce a QR's lifetime; a few minutes is what its page shows.
    "BOT_QR_LIFETIME": 240,
    "BOT_SESSION_CACHE": "wxpy-session.pkl",
    "BOT_STOP_GRACE_SECONDS": 3,
    "WATCHDOG_SECONDS": 45,
    # The bot's lease (one bot per deployment): renewed every third of this; another process
    # takes over a crashed holder's bot after it (a clean stop hands it over at once).
    "BOT_LEASE_SECONDS": 30,
    "ALERT_GRACE_SECONDS": 120,
    "ALERT_REMIND_SECONDS": 3600,
    "ALERT_CHECK_SECONDS": 2,
    "PUBLIC_URL": "http://127.0.0.1:5000",
    "METRICS": "open",
    # Payments and the outbox (geekai/payments, geekai/outbox).
    "ORDER_TTL_SECONDS": 1800,
    "ORDER_EXPIRY_GRACE_SECONDS": 60,
    "ORDER_EXPIRY_CHECK_SECONDS": 15,
    "OUTBOX_INTERVAL_SECONDS": 2,
    "OUTBOX_TIMEOUT_SECONDS": 10,
    "OUTBOX_RETRY_FIRST_SECONDS": 2,
    "OUTBOX_RETRY_MAX_SECONDS": 600,
    "OUTBOX_MAX_ATTEMPTS": 20,
    # Live status pages (server-sent event streams) open at once; each holds a server thread.
    "STREAM_MAX_CLIENTS": 8,
    # Reverse proxies in front whose X-Forwarded-For/-Proto/-Host are trusted (0: none), and the
    # address the nearest one connects from (waitress trusts the headers only from there; *: any).
    "PROXY_COUNT": 0,
    "PROXY_ADDRESS": "127.0.0.1",
    # Largest request body accepted (bytes); a larger one is answered 413 before it is read.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # How long an admin sign-in lasts (from the login, not from the last request).
    "SESSION_LIFETIME_SECONDS": 7 * 86400,
    "SQLALCHEMY_DATABASE_URI": None,  # filled in with instance/geekai.sqlite
    # Database connections kept open per process: waitress's 16 threads, the bot and its jobs.
    "DB_POOL_SIZE": 24,
    # Apply missing migrations when the app is built (false: only by `flask db upgrade`).
    "DB_AUTO_UPGRADE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    # CSRF is checked by the API itself, so that bearer-token scripts need none.
    "WTF_CSRF_CHECK_DEFAULT": False,
    "WTF_CSRF_TIME_LIMIT": None,
}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _seconds(minimum: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if not number >= minimum or number == float("inf"):
            raise ValueError(value)
        return int(number) if number == int(number) else number
    return parse


def _count(value: Any) -> int:
    if isinstance(value, bool) or int(value) != float(value) or int(value) < 0:
        raise ValueError(value)
    return int(value)


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(value)
        return value
    return parse


def _http_url(value: Any) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(value)
    return str(value).rstrip("/")


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The same rule, with unset (None or "") allowed."""
    def parse_optional(value: Any):
        return None if value in (None, "") else parse(value)
    return parse_optional


def _smtp_url(value: Any) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(value)
    parts.port  # noqa: B018 (raises ValueError on a bad port)
    return str(value)


def _addresses(value: Any) -> str:
    addresses = [part.strip() for part in str(value).split(",")]
    if not all("@" in address and " " not in address for address in addresses):
        raise ValueError(value)
    return ",".join(addresses)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < 8:
        raise ValueError(value)
    return value


def _proxy_address(value: Any) -> str:
    """An IP address, in the form waitress compares with the peer's address, or "*"."""
    if value == "*":
        return value
    return ipaddress.ip_address(str(value).strip()).compressed


def _bytes(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        size = _count(value)
        if size < minimum:
            raise ValueError(value)
        return size
    return parse


def _nonempty_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value


# wxpy: web WeChat; ilink: Tencent's bot API; demo and demo-ilink: the same against a built-in emulator.
BACKENDS = ("wxpy", "ilink", "demo", "demo-ilink")


@dataclass(frozen=True)
class Rule:
    parse: Callable[[Any], Any]
    expected: str


RULES: dict[str, Rule] = {
    "BOT_ENABLED": Rule(_flag, "true or false"),
    "BOT_BACKEND": Rule(_choice(*BACKENDS), "'wxpy', 'ilink', 'demo' or 'demo-ilink'"),
    "BOT_REQUIRED": Rule(_flag, "true or false"),
    "DB_AUTO_UPGRADE": Rule(_flag, "true or false"),
    "DB_POOL_SIZE": Rule(_count, "a whole number >= 0 (connections kept per process; above the server's threads)"),
    "WECHAT_BASE_URL": Rule(_http_url, "an http(s) URL such as https://login.weixin.qq.com"),
    "ILINK_BASE_URL": Rule(_http_url, "an http(s) URL such as https://ilinkai.weixin.qq.com"),
    "ILINK_TOKEN_FILE": Rule(_nonempty_text, "a file name (relative to the instance folder) or an absolute path"),
    "ILINK_POLL_SECONDS": Rule(_seconds(0.1), "a number of seconds >= 0.1 (iLink holds getupdates 35 s)"),
    "BOT_LOGIN_TIMEOUT": Rule(_seconds(0.1), "a number of seconds >= 0.1 (WeChat long-polls ~25 s: use 60 in production)"),
    "BOT_RETRY_MAX_SECONDS": Rule(_seconds(0.1), "a number of seconds >= 0.1"),
    "BOT_RETRY_FIRST_SECONDS": Rule(_seconds(0.01), "a number of seconds >= 0.01"),
    "BOT_QR_MAX_REFRESH": Rule(_count, "a whole number >= 0"),
    "BOT_QR_LIFETIME": Rule(_seconds(1), "a number of seconds >= 1"),
    "BOT_SESSION_CACHE": Rule(_nonempty_text, "a file name (relative to the instance folder) or an absolute path"),
    "BOT_STOP_GRACE_SECONDS": Rule(_seconds(0), "a number of seconds >= 0"),
    "WATCHDOG_SECONDS": Rule(_seconds(1), "a number of seconds >= 1"),
    "BOT_LEASE_SECONDS": Rule(_seconds(1), "a number of seconds >= 1"),
    "ALERT_GRACE_SECONDS": Rule(_seconds(0), "a number of seconds >= 0"),
    "ALERT_REMIND_SECONDS": Rule(_seconds(0), "a number of seconds >= 0 (0: no reminders)"),
    "ALERT_CHECK_SECONDS": Rule(_seconds(0.05), "a number of seconds >= 0.05"),
    "PUBLIC_URL": Rule(_http_url, "the http(s) URL people open the status page at, such as https://bot.example.com"),
    "METRICS": Rule(_choice("open", "token", "off"), "'open', 'token' or 'off'"),
    "STREAM_MAX_CLIENTS": Rule(_count, "a whole number >= 0 (below the server's 16 threads)"),
    "PROXY_COUNT": Rule(_count, "a whole number >= 0"),
    "PROXY_ADDRESS": Rule(_proxy_address, "the IP address the reverse proxy connects from (such as 127.0.0.1), or *"),
    "MAX_CONTENT_LENGTH": Rule(_bytes(1024), "a number of bytes >= 1024 (default 1048576, 1 MiB)"),
    "SESSION_LIFETIME_SECONDS": Rule(_seconds(60), "a number of seconds >= 60 (default 604800, 7 days)"),
    "ADMIN_PASSWORD": Rule(_secret, "a string of at least 8 characters"),
    "API_TOKEN": Rule(_secret, "a string of at least 8 characters"),
    "SECRET_KEY": Rule(_secret, "a string of at least 8 characters"),
    "ALERT_WEBHOOK_URL": Rule(_optional(_http_url), "an http(s) URL"),
    "ALERT_WECOM_URL": Rule(_optional(_http_url), "an http(s) URL"),
    "ALERT_DINGTALK_URL": Rule(_optional(_http_url), "an http(s) URL"),
    "ALERT_FEISHU_URL": Rule(_optional(_http_url), "an http(s) URL"),
    "ALERT_SMTP_URL": Rule(_optional(_smtp_url), "a URL such as smtp://user:password@host:587 or smtps://user:password@host:465"),
    "ALERT_EMAIL_TO": Rule(_optional(_addresses), "one or more mail addresses separated by commas"),
    "PAYMENT_CALLBACK_URL": Rule(_optional(_http_url), "an http(s) URL"),
    "PAYMENT_CALLBACK_SECRET": Rule(_secret, "a string of at least 8 characters"),
    "ORDER_TTL_SECONDS": Rule(_seconds(10), "a number of seconds >= 10"),
    "ORDER_EXPIRY_GRACE_SECONDS": Rule(_seconds(0), "a number of seconds >= 0"),
    "ORDER_EXPIRY_CHECK_SECONDS": Rule(_seconds(0.05), "a number of seconds >= 0.05"),
    "OUTBOX_INTERVAL_SECONDS": Rule(_seconds(0.05), "a number of seconds >= 0.05"),
    "OUTBOX_TIMEOUT_SECONDS": Rule(_seconds(0.1), "a number of seconds >= 0.1"),
    "OUTBOX_RETRY_FIRST_SECONDS": Rule(_seconds(0.01), "a number of seconds >= 0.01"),
    "OUTBOX_RETRY_MAX_SECONDS": Rule(_seconds(0.01), "a number of seconds >= 0.01"),
    "OUTBOX_MAX_ATTEMPTS": Rule(_count, "a whole number >= 0"),
}


def load(app, test_config: dict | None = None) -> None:
    """Layer defaults, instance/config.py, GEEKAI_* environment and test config, then validate."""
    app.config.from_mapping(DEFAULTS)
    _load_instance_file(app)
    _warn_unknown_environment(set(app.config))
    app.config.from_prefixed_env("GEEKAI")
    if test_config:
        app.config.from_mapping(test_config)
    validate(app.config)
    refuse_in_demo(app.config)
    app.config["PERMANENT_SESSION_LIFETIME"] = app.config["SESSION_LIFETIME_SECONDS"]
    _warn_short_login_timeout(app.config)
    _warn_short_watchdog(app.config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        path = os.path.join(app.instance_path, "geekai.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + path


# Settings that would let the emulator's made-up payments reach the outside world.
_REAL_ONLY = {"PAYMENT_CALLBACK_URL": "unset in demo mode: the emulator's receipts are not real payments"}


def refuse_in_demo(config) -> None:
    """Demo mode books receipts that anyone with the demo page can make up: they must stay local."""
    if config["BOT_BACKEND"] not in ("demo", "demo-ilink"):
        return
    for key, expected in _REAL_ONLY.items():
        if config.get(key):
            raise ConfigError(key, expected, config[key])


# The real web WeChat holds each login poll about 25 s before answering; iLink about 35 s.
LONG_POLLS = {"wxpy": ("WECHAT_BASE_URL", 25), "ilink": ("ILINK_BASE_URL", 35)}


def _warn_short_login_timeout(config) -> None:
    """Against the real WeChat a timeout under its long-poll would end every login poll early."""
    if config["BOT_BACKEND"] not in LONG_POLLS:
        return
    key, long_poll = LONG_POLLS[config["BOT_BACKEND"]]
    host = urlsplit(config[key]).hostname or ""
    real = host == "qq.com" or host.endswith((".qq.com", ".wechat.com"))
    if real and config["BOT_LOGIN_TIMEOUT"] <= long_poll:
        logger.warning("BOT_LOGIN_TIMEOUT is %s s, but WeChat holds a login poll about %s s: "
                       "logins will time out; use 60", config["BOT_LOGIN_TIMEOUT"], long_poll)


def _warn_short_watchdog(config) -> None:
    """iLink holds a quiet getupdates ~35 s: a watchdog that waits less restarts a healthy bot."""
    if config["BOT_BACKEND"] == "ilink" and config["WATCHDOG_SECONDS"] <= config["ILINK_POLL_SECONDS"] + 5:
        logger.warning("WATCHDOG_SECONDS is %s s, but iLink may hold a wait for messages %s s: the watchdog "
                       "would restart a bot that is only quiet; use at least %s", config["WATCHDOG_SECONDS"],
                       config["ILINK_POLL_SECONDS"], config["ILINK_POLL_SECONDS"] + 10)


# GEEKAI_* variables read by app.py and the CLI rather than by the app's config.
_ENTRY_POINT_KEYS = {"HOST", "PORT", "INSTANCE_PATH", "URL"}


def _warn_unknown_environment(known: set[str]) -> None:
    """A misspelt GEEKAI_ variable would otherwise be ignored without a word."""
    for name in sorted(os.environ):
        key = name[len("GEEKAI_"):]
        if name.startswith("GEEKAI_") and key not in known | set(RULES) | _ENTRY_POINT_KEYS:
            logger.warning("%s is not a geekai setting and is ignored (misspelt?)", name)


def _load_instance_file(app) -> None:
    """instance/config.py, if there is one; an error in it is a config error naming the file."""
    path = os.path.join(app.instance_path, "config.py")
    try:
        app.config.from_pyfile("config.py", silent=True)
    except SyntaxError as exc:
        raise ConfigError(path, "valid Python", f"syntax error on line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # the file runs as Python: anything can go wrong in it
        raise ConfigError(path, "loadable", f"{type(exc).__name__}: {exc}") from None


def check(instance_path: str, test_config: dict | None = None):
    """Validate the configuration as create_app would, without building the app (raises
    ConfigError); the validated config, for what the server needs before the app exists."""
    from flask import Flask

    app = Flask("geekai", instance_path=instance_path, instance_relative_config=True)
    load(app, test_config)
    return app.config


def validate(config) -> None:
    """Replace each known key by its parsed value or raise ConfigError naming it."""
    for key, rule in RULES.items():
        if key not in config:
            continue
        try:
            config[key] = rule.parse(config[key])
        except (TypeError, ValueError):
            raise ConfigError(key, rule.expected, config[key]) from None
