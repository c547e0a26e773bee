"""Failures of a login attempt, classified by what the supervisor does next."""
from __future__ import annotations

import socket

TRANSIENT = "transient"          # retry with backoff
SESSION_LOST = "session_lost"    # logged out or session rejected: fresh QR login at once
NEEDS_PERSON = "needs_person"    # wait for an admin (QR refresh cap, account refused)
PERMANENT = "permanent"          # bad config, missing dependency: error
STOPPED = "stopped"              # a stop was asked; not a failure


class BotFailure(Exception):
    """A failure whose kind is known; the message is the reason shown to the admin."""

    kind = TRANSIENT


class WeChatUnreachable(BotFailure):
    kind = TRANSIENT


class WeChatTimeout(BotFailure):
    kind = TRANSIENT


class WeChatBadAnswer(BotFailure):
    kind = TRANSIENT


class SessionRejected(BotFailure):
    kind = SESSION_LOST


class QrRefreshLimit(BotFailure):
    kind = NEEDS_PERSON


class LoginRefused(BotFailure):
    kind = NEEDS_PERSON


class BackendUnavailable(BotFailure):
    kind = PERMANENT


class StopRequested(BotFailure):
    kind = STOPPED


class SendFailed(Exception):
    """A message was not sent. The message is the reason a person can act on; `permanent` says
    whether a retry can never help (unknown contact, text refused) or may (network, offline)."""

    def __init__(self, reason: str, *, permanent: bool):
        super().__init__(reason)
        self.permanent = permanent


class NotOnline(SendFailed):
    """No logged-in session to send through: a queued message waits, and no attempt is counted."""

    def __init__(self, reason: str = "the bot is not logged in"):
        super().__init__(reason, permanent=False)


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, reason) for any exception a login attempt raised, SystemExit included."""
    if isinstance(exc, BotFailure):
        return exc.kind, str(exc) or type(exc).__name__
    if isinstance(exc, SystemExit):
        # itchat calls sys.exit() when its connectivity probe fails.
        return TRANSIENT, "WeChat unreachable (itchat gave up and called sys.exit)"
    if isinstance(exc, ImportError):
        return PERMANENT, f"missing dependency: {exc}"
    return TRANSIENT, _network_reason(exc) or f"unexpected {type(exc).__name__}: {exc}"


def _network_reason(exc: BaseException) -> str | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with wxpy
        return None
    if isinstance(exc, requests.Timeout):
        return f"WeChat did not answer in time: {exc}"
    if isinstance(exc, requests.ConnectionError):
        return f"WeChat unreachable: {exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"WeChat did not answer in time: {exc}"
    if isinstance(exc, OSError):
        return f"network error: {exc}"
    if isinstance(exc, (ValueError, KeyError, IndexError)):
        return f"unexpected answer from WeChat: {type(exc).__name__}: {exc}"
    return None
