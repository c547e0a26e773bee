"""Deadlines and cancellation for every HTTP request a login attempt makes to WeChat.

itchat sets no timeouts before the login completes, its connectivity probe bypasses the
session, and wxpy retries read timeouts 30 times. Here one AttemptContext carries the
attempt's deadline and its cancel flag; the session's request method is wrapped so that each
call gets the time that is left as its timeout, and answers that would make itchat loop
forever (5xx, garbage) end the attempt with a named, classified failure instead.
"""
from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import (LoginRefused, SessionRejected, StopRequested, WeChatBadAnswer, WeChatTimeout,
                     WeChatUnreachable)

# Once online, wxpy gives synccheck (10, 30) and webwxsync (10, 20); everything else gets this.
ONLINE_TIMEOUT = (10, 35)

_EXPECTED_LOGIN_ANSWERS = {
    "/jslogin": re.compile(r"window\.QRLogin\.code = 200;"),
    "/cgi-bin/mmwebwx-bin/login": re.compile(r"window\.code=\d+"),
}
_SYNCCHECK = re.compile(r'retcode:"(\d+)"')
_LOGGED_OUT = {"1100", "1101", "1102"}
_LOGIN_PAGE_RET = re.compile(r"<ret>(-?\d+)</ret>")
_LOGIN_PAGE_MESSAGE = re.compile(r"<message>(.*?)</message>", re.S)


class AttemptContext:
    """The deadline, cancel flag and online state shared by one login attempt's requests."""

    def __init__(self, timeout: float, cancel: threading.Event):
        self.timeout = timeout
        self.cancel = cancel
        self.online = False
        self.last_sync_ok: float | None = None
        self.last_sync_problem = ""
        self.session_ended = False
        self.end_code = ""        # the retcode (or Ret) WeChat ended the session with
        self.http: requests.Session | None = None
        self.closed = False
        self._sync_lock = threading.Lock()
        self.extend()

    def close(self, timeout: float = 5.0) -> None:
        """Refuse every further request, after any webwxsync in flight (it carries messages) ends."""
        acquired = self._sync_lock.acquire(timeout=timeout)
        self.closed = True
        if acquired:
            self._sync_lock.release()

    def extend(self) -> None:
        """Restart the deadline: WeChat answered, so the next wait may take the full timeout."""
        self.deadline = time.monotonic() + self.timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise if a stop was asked or the deadline has passed."""
        if self.cancel.is_set() or self.closed:
            raise StopRequested("stop requested")
        if self.remaining() <= 0:
            raise WeChatTimeout(f"WeChat did not answer within {self.timeout:g} s")

    def request_timeout(self, given):
        """The timeout for one request: the time left before the deadline while logging in."""
        if self.online:
            if self.closed:
                raise StopRequested("session closed")
            return given or ONLINE_TIMEOUT
        self.check()
        left = self.remaining()
        if given is None:
            return left
        if isinstance(given, tuple):
            return tuple(min(part, left) if part else left for part in given)
        return min(given, left)


def probe(base_url: str, ctx: AttemptContext) -> None:
    """A bounded replacement for itchat's test_connect, which retries unbounded and then sys.exit()s."""
    try:
        requests.get(base_url, timeout=ctx.request_timeout(None))
    except requests.Timeout as exc:
        raise WeChatTimeout(f"WeChat ({base_url}) did not answer within {ctx.timeout:g} s") from exc
    except requests.RequestException as exc:
        raise WeChatUnreachable(f"cannot reach WeChat at {base_url}: {_short(exc)}") from exc


def bound_session(session: requests.Session, ctx: AttemptContext) -> None:
    """Give every request of this session the attempt's deadline; never retry a read timeout."""
    ctx.http = session
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    wrap_requests(session, ctx)


def wrap_requests(session: requests.Session, ctx: AttemptContext) -> None:
    """Wrap the session's current request method (wxpy replaces it once the login is done)."""
    original = session.request

    def request(method, url, **kwargs):
        path = urlsplit(url).path
        if path.endswith("/webwxsync"):
            # Fetching messages moves WeChat's sync key on: never start one on a closed session.
            with ctx._sync_lock:
                return send(method, url, path, kwargs)
        return send(method, url, path, kwargs)

    def send(method, url, path, kwargs):
        kwargs["timeout"] = ctx.request_timeout(kwargs.get("timeout"))
        try:
            response = original(method, url, **kwargs)
        except requests.RequestException as exc:
            _note_online_failure(ctx, path, exc)
            raise _login_failure(ctx, url, exc) from exc
        if ctx.online or path.endswith("/synccheck"):
            _note_synccheck(ctx, path, response)
            if ctx.online and path.endswith("/webwxsync"):
                _check_webwxsync(ctx, response)
        else:
            _check_login_answer(path, response)
        return response

    session.request = request


def _login_failure(ctx: AttemptContext, url: str, exc: Exception) -> Exception:
    if ctx.online:
        return exc
    if isinstance(exc, requests.Timeout):
        return WeChatTimeout(f"WeChat did not answer {urlsplit(url).path} within {ctx.timeout:g} s")
    return WeChatUnreachable(f"lost the connection to WeChat during login: {_short(exc)}")


# The login steps whose HTTP errors are ours to report. Other calls (statusnotify, contacts,
# push login) itchat tolerates failing, and a server without them still logs in.
_CHECKED_STATUS = tuple(_EXPECTED_LOGIN_ANSWERS) + ("/webwxnewloginpage", "/webwxinit")


def _check_login_answer(path: str, response: requests.Response) -> None:
    """Turn answers that itchat would loop on forever into a classified failure."""
    if response.status_code >= 400 and path.endswith(_CHECKED_STATUS):
        raise WeChatBadAnswer(f"WeChat answered HTTP {response.status_code} for {path}")
    for suffix, expected in _EXPECTED_LOGIN_ANSWERS.items():
        if path.endswith(suffix) and not expected.search(response.text):
            raise WeChatBadAnswer(f"unexpected answer from WeChat for {path}: {response.text[:80]!r}")
    if path.endswith("/webwxnewloginpage"):
        ret = _LOGIN_PAGE_RET.search(response.text)
        if ret is None and "<skey>" not in response.text:
            raise WeChatBadAnswer(f"unexpected login page from WeChat: {response.text[:80]!r}")
        if ret is not None and ret.group(1) != "0":
            message = _LOGIN_PAGE_MESSAGE.search(response.text)
            text = message.group(1).strip() if message else ""
            raise LoginRefused(f"WeChat refused the web login for this account (ret {ret.group(1)}): {text}")


def _note_synccheck(ctx: AttemptContext, path: str, response: requests.Response) -> None:
    if not path.endswith("/synccheck"):
        return
    match = _SYNCCHECK.search(response.text)
    if match and match.group(1) == "0":
        ctx.last_sync_ok = time.monotonic()
    elif match:
        ctx.session_ended, ctx.end_code = True, match.group(1)
        ctx.last_sync_problem = f"WeChat ended the session (synccheck retcode {match.group(1)})"
    else:
        ctx.last_sync_problem = f"unexpected synccheck answer (HTTP {response.status_code})"


def _check_webwxsync(ctx: AttemptContext, response: requests.Response) -> None:
    """A session WeChat ended may show only in webwxsync; itchat would then poll for ever."""
    try:
        ret = str(response.json()["BaseResponse"]["Ret"])
    except (ValueError, KeyError, TypeError):
        return  # itchat reports what it cannot read
    if ret in _LOGGED_OUT:
        ctx.session_ended, ctx.end_code = True, ret
        ctx.last_sync_problem = f"WeChat ended the session (webwxsync Ret {ret})"
        raise SessionRejected(ctx.last_sync_problem)  # itchat's loop gives up after a few of these


def _note_online_failure(ctx: AttemptContext, path: str, exc: Exception) -> None:
    if ctx.online:
        ctx.last_sync_problem = f"lost the connection to WeChat ({path}): {_short(exc)}"


def _short(exc: Exception) -> str:
    text = str(exc)
    reason = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|Connection aborted|RemoteDisconnected", text)
    return reason.group(0) if reason else (text[:160] or type(exc).__name__)
