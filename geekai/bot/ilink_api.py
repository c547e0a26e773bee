"""Tencent's iLink bot API on the wire: headers, base_info, bounded waits, answers classified.

The protocol is Tencent/openclaw-weixin's (docs/protocol.md, src/api/api.ts, src/api/types.ts;
see ILINK_NOTES.md). Every call has a timeout; an answer is a JSON object or a classified
failure (errors.py). The bot token, the QR's value and the verification code never appear in a
failure's text, a log line or an exception chain: requests' own errors name the URL, so they
are replaced, not chained.
"""
from __future__ import annotations

import base64
import json
import logging
import random
import re
import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .bounded_http import _short
from .errors import SessionRejected, StopRequested, WeChatBadAnswer, WeChatTimeout, WeChatUnreachable

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ilinkai.weixin.qq.com"
# The protocol revision this client follows (docs/protocol.md): base_info.channel_version, and
# iLink-App-ClientVersion as 0x00MMNNPP in decimal. bot_agent only names the client in their logs.
CHANNEL_VERSION = "2.4.8"
APP_ID = "bot"
BOT_AGENT = "geekai/1.0"
BOT_TYPE = "3"
# Tencent's plugin waits this long on get_qrcode_status, the server's own long-poll.
QR_POLL_SECONDS = 35.0
STALE_TOKEN = -14       # the bot token expired: only a new QR login helps
SEND_REFUSED = -2       # sendmessage: no or a stale context_token, or a degraded session
# Gateways in front of iLink answer these when the long-poll outlived them: no answer yet.
GATEWAY_TIMEOUTS = (504, 524)


def client_version(version: str = CHANNEL_VERSION) -> int:
    """"2.4.8" -> 0x00020408, as iLink-App-ClientVersion wants it."""
    major, minor, patch = (int(part) for part in (version.split(".") + ["0", "0"])[:3])
    return ((major & 0xFF) << 16) | ((minor & 0xFF) << 8) | (patch & 0xFF)


APP_HEADERS = {"iLink-App-Id": APP_ID, "iLink-App-ClientVersion": str(client_version())}
BASE_INFO = {"channel_version": CHANNEL_VERSION, "bot_agent": BOT_AGENT}


def wechat_uin() -> str:
    """X-WECHAT-UIN: a random uint32, in decimal, in base64."""
    return base64.b64encode(str(random.getrandbits(32)).encode()).decode()


class IlinkRefused(WeChatBadAnswer):
    """iLink answered, with a non-zero ret or errcode."""

    def __init__(self, call: str, code: int, errmsg: str):
        self.call, self.code, self.errmsg = call, code, errmsg
        detail = f": {errmsg}" if errmsg else ""
        super().__init__(f"iLink refused {call} (ret {code}{detail})")


class SessionExpired(SessionRejected):
    """-14: the bot token is stale; the session is over and a new QR login is needed."""

    def __init__(self, call: str):
        super().__init__(f"the iLink session expired ({call} answered -14): scan a new QR to log in again")


class IlinkClient:
    """The calls of one thread (a login, a poll loop or the senders) with one HTTP session."""

    def __init__(self, base_url: str, *, timeout: float, cancel: threading.Event, token: str = ""):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cancel = cancel
        self.token = token
        self.qrcode_method = "POST"
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def close(self) -> None:
        self.http.close()

    # -- login (no token) --------------------------------------------------------------------
    def get_bot_qrcode(self) -> dict:
        """A new login QR: {"qrcode": id, "qrcode_img_content": the text to draw as a QR}."""
        path = f"ilink/bot/get_bot_qrcode?bot_type={BOT_TYPE}"
        if self.qrcode_method == "POST":
            # Newer servers take the tokens this client held before; it keeps none (empty list).
            response = self._send("POST", self.base_url, path, "get_bot_qrcode", self.timeout,
                                  data=json.dumps({"local_token_list": []}), headers=self._headers(token=False))
            if response.status_code in (404, 405):
                logger.info("iLink's get_bot_qrcode does not take POST (HTTP %s); asking with GET",
                            response.status_code)
                self.qrcode_method = "GET"
        if self.qrcode_method == "GET":
            response = self._send("GET", self.base_url, path, "get_bot_qrcode", self.timeout,
                                  headers=dict(APP_HEADERS))
        answer = _read(response, "get_bot_qrcode")
        if not (_text(answer.get("qrcode")) and _text(answer.get("qrcode_img_content"))):
            raise WeChatBadAnswer("iLink's get_bot_qrcode answered without qrcode and qrcode_img_content")
        return answer

    def qrcode_status(self, base_url: str, qrcode: str, verify_code: str | None, timeout: float) -> dict | None:
        """One long poll of the QR's status; None when no answer came within `timeout`."""
        params = {"qrcode": qrcode}
        if verify_code:
            params["verify_code"] = verify_code
        try:
            response = self._send("GET", base_url, "ilink/bot/get_qrcode_status", "get_qrcode_status", timeout,
                                  params=params, headers=dict(APP_HEADERS))
        except WeChatTimeout:
            return None
        if response.status_code in GATEWAY_TIMEOUTS:
            return None
        return _read(response, "get_qrcode_status")

    # -- bot calls (the token) -------------------------------------------------------------------
    def call(self, name: str, body: dict | None = None, timeout: float | None = None) -> dict:
        """POST a bot call; its answer when ret/errcode is 0, else IlinkRefused or SessionExpired."""
        payload = dict(body or {}, base_info=BASE_INFO)
        response = self._send("POST", self.base_url, f"ilink/bot/{name}", name, timeout or self.timeout,
                              data=json.dumps(payload, ensure_ascii=False).encode(), headers=self._headers())
        answer = _read(response, name)
        code, errmsg = _app_error(answer, name)
        if code == STALE_TOKEN:
            raise SessionExpired(name)
        if code:
            raise IlinkRefused(name, code, errmsg)
        return answer

    def getupdates(self, cursor: str, timeout: float) -> dict | None:
        """One long poll for messages; None when the server did not answer within `timeout`."""
        try:
            return self.call("getupdates", {"get_updates_buf": cursor}, timeout=timeout)
        except _NoAnswer:
            return None

    def _headers(self, token: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "AuthorizationType": "ilink_bot_token",
                   "X-WECHAT-UIN": wechat_uin(), **APP_HEADERS}
        if token and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _send(self, method: str, base: str, path: str, name: str, timeout: float, **kwargs) -> requests.Response:
        if self.cancel.is_set():
            raise StopRequested("stop requested")
        try:
            response = self.http.request(method, f"{base}/{path}", timeout=timeout, **kwargs)
        except requests.Timeout:
            failure = _NoAnswer(f"iLink did not answer {name} within {timeout:g} s")
        except requests.RequestException as exc:
            failure = WeChatUnreachable(f"cannot reach iLink at {urlsplit(base).netloc} ({name}): {_reason(exc)}")
        else:
            failure = None
        if failure is not None:
            raise failure  # raised here, not in the except: requests' error (and its URL) is not chained
        if response.status_code in GATEWAY_TIMEOUTS and name == "getupdates":
            raise _NoAnswer(f"iLink's gateway gave up on {name} (HTTP {response.status_code})")
        return response


class _NoAnswer(WeChatTimeout):
    """No answer within the wait: for a long poll, silence; for any other call, a timeout."""


def _read(response: requests.Response, name: str) -> dict:
    """The JSON object answered, or a classified failure naming the call."""
    if response.status_code >= 400:
        raise WeChatBadAnswer(f"iLink answered HTTP {response.status_code} for {name}")
    try:
        # Python's json keeps integers exact: a uint64 message_id above 2**53 survives.
        answer = json.loads(response.content)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        sample = response.content[:60].decode("utf-8", "replace")
        raise WeChatBadAnswer(f"unexpected answer from iLink for {name}: {sample!r}")
    return answer


def _app_error(answer: dict, name: str) -> tuple[int, str]:
    """(code, errmsg) of a non-zero ret or errcode; (0, "") for success."""
    for key in ("ret", "errcode"):
        value = answer.get(key)
        if value in (None, "", 0, "0"):
            continue
        try:
            code = int(value)
        except (TypeError, ValueError):
            raise WeChatBadAnswer(f"unexpected {key} from iLink for {name}: {str(value)[:40]!r}") from None
        if code:
            return code, str(answer.get("errmsg") or "")[:200]
    return 0, ""


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _reason(exc: Exception) -> str:
    """Why a request failed, without its URL (which may carry the QR's value)."""
    return re.sub(r"url: \S+", "url: …", _short(exc))
