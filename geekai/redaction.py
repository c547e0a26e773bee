"""Secrets out of every text a person or a log sees: URLs' credentials, and error texts that quote them.

A webhook URL carries its credential (WeCom ?key=, DingTalk ?access_token=&sign=, Feishu's
.../hook/<token>, smtp://user:password@host), and so do web WeChat's URLs (?skey=, &sid=,
&pass_ticket=). Errors quote URLs whole ("Max retries exceeded with url: /send?key=..."), so
error texts get the same treatment as the targets before they are stored, shown or logged.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit

# Query parameters that carry a credential (WeCom ?key=, DingTalk ?access_token= and &sign=,
# web WeChat's skey/sid/pass_ticket/ticket, ...).
SECRET_PARAMS = frozenset({"key", "access_token", "token", "sign", "signature", "secret", "password",
                           "apikey", "api_key", "skey", "sid", "wxsid", "pass_ticket", "ticket"})
# A path segment after which a webhook URL carries its token (Feishu/Lark .../bot/v2/hook/<token>).
HOOK_SEGMENTS = frozenset({"hook", "hooks"})
MASK = "***"

_PARAM = re.compile(r"(?P<lead>[?&;]|&amp;)(?P<name>[A-Za-z_][A-Za-z0-9_%.-]*)=(?P<value>[^&\s'\"<>;,)\]]*)")
_HOOK = re.compile(r"(?P<lead>/(?:hook|hooks)/)(?P<value>[^/?#\s'\"<>]+)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<lead>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)(?P<value>[^@/\s'\"]+)(?=@)")


def redact(target: str) -> str:
    """A target URL without its secrets, for pages, logs and the API: the password of the host
    part, credential query values and the token of a hook path become ***."""
    try:
        parts = urlsplit(target)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(":" + parts.password + "@", f":{MASK}@", 1)
    segments = parts.path.split("/")
    for n, segment in enumerate(segments[:-1]):
        if segment.lower() in HOOK_SEGMENTS:
            segments[n + 1:] = [MASK if s else s for s in segments[n + 1:]]
            break
    query = "&".join(_redact_param(piece) for piece in parts.query.split("&")) if parts.query else ""
    return parts._replace(netloc=netloc, path="/".join(segments), query=query).geturl()


def _redact_param(piece: str) -> str:
    name, equals, _value = piece.partition("=")
    return f"{name}={MASK}" if equals and unquote(name).lower() in SECRET_PARAMS else piece


def redact_text(text: str, *secrets_of: str) -> str:
    """Free text (an error, a traceback, a log line) with every URL credential in it masked.

    Each of `secrets_of` (the URLs the text may be about) also has its secret parts masked
    wherever they appear, quoted or not, in whatever form the text holds them.
    """
    if not text:
        return text
    for url in secrets_of:
        for secret in url_secrets(url):
            text = text.replace(secret, MASK)
    text = _PARAM.sub(_mask_param, text)
    text = _HOOK.sub(lambda m: m.group("lead") + MASK, text)
    return _USERINFO.sub(lambda m: m.group("lead") + MASK, text)


def _mask_param(match: re.Match) -> str:
    if unquote(match.group("name")).lower() in SECRET_PARAMS and match.group("value"):
        return f"{match.group('lead')}{match.group('name')}={MASK}"
    return match.group(0)


def url_secrets(url: str) -> list[str]:
    """The secret pieces of a URL, longest first (raw and %-decoded)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password] if password else []
    segments = parts.path.split("/")
    for n, segment in enumerate(segments[:-1]):
        if segment.lower() in HOOK_SEGMENTS:
            found += [s for s in segments[n + 1:] if s]
            break
    for piece in parts.query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and value and unquote(name).lower() in SECRET_PARAMS:
            found.append(value)
    found += [unquote(s) for s in found]
    # Short values ("1", "ok") would mask unrelated words: only what looks like a credential.
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """A handler filter: every record's message and traceback through redact_text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
