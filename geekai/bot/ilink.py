"""The iLink backend: Tencent's official bot API for personal WeChat accounts (BOT_BACKEND=ilink).

A login reuses the bot token kept in the instance folder; without one (or once it expired) it
shows a QR, follows the scan, the verification code the phone may ask for and any redirect, and
stores the token it gets. Every wait is bounded: an answer from iLink extends the attempt's
deadline by BOT_LOGIN_TIMEOUT, silence for that long ends it; the wait for a person to scan is
bounded by QR expiry and BOT_QR_MAX_REFRESH instead, the wait for the code by BOT_QR_LIFETIME.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from ..instance_secrets import write_private
from . import qr
from .backend import LoginListener
from .errors import LoginRefused, StopRequested, WeChatBadAnswer, WeChatTimeout
from .ilink_api import QR_POLL_SECONDS, IlinkClient, IlinkRefused, SessionExpired
from .ilink_session import IlinkSession, IlinkStore

logger = logging.getLogger(__name__)

# A server that answers a long poll at once must not be polled in a busy loop.
MIN_POLL_INTERVAL = 0.5
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


@dataclass
class Credentials:
    """What a confirmed QR login gives: the bot token, the bot's id and where its API is."""

    bot_token: str
    ilink_bot_id: str
    baseurl: str
    ilink_user_id: str = ""


class TokenFile:
    """The bot token in the instance folder: JSON, mode 0600, ours; never logged."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> Credentials | None:
        """The saved credentials, or None (a file that is not ours or not readable is moved aside)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            self._move_aside("not a file of this user")
            return None
        if info.st_mode & 0o077:
            # Whoever could read it may hold the bot: say so, and close it from now on.
            logger.warning("the iLink token file %s was readable by others; it is 0600 now", self.path)
            os.chmod(self.path, 0o600)
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            creds = Credentials(**{key: data[key] for key in ("bot_token", "ilink_bot_id", "baseurl")},
                                ilink_user_id=str(data.get("ilink_user_id") or ""))
            if not (creds.bot_token and creds.ilink_bot_id and _http_url(creds.baseurl)):
                raise ValueError("empty fields")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._move_aside(f"unreadable ({type(exc).__name__})")
            return None
        return creds

    def save(self, creds: Credentials) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        write_private(self.path, json.dumps(asdict(creds) | {"saved_at": int(time.time())}).encode())

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def _move_aside(self, problem: str) -> None:
        aside = f"{self.path}.{problem.split()[0]}-{int(time.time())}"
        shutil.move(self.path, aside)
        logger.warning("iLink token file %s is %s; moved to %s, a QR login follows", self.path, problem, aside)


class IlinkBackend:
    """Logs in to iLink at ILINK_BASE_URL and returns an IlinkSession that long-polls for messages."""

    def __init__(self, *, base_url: str, token_path: str, store: IlinkStore, login_timeout: float,
                 qr_max_refresh: int, code_wait: float, poll_seconds: float):
        self.base_url = base_url.rstrip("/")
        self.tokens = TokenFile(token_path)
        self.store = store
        self.login_timeout = login_timeout
        self.qr_max_refresh = qr_max_refresh
        self.code_wait = code_wait
        self.poll_seconds = poll_seconds
        # Sessions follow each other (a watchdog restart while a poll still hangs): one delivers at a time.
        self.delivery_lock = threading.Lock()

    def login(self, listener: LoginListener, cancel: threading.Event) -> IlinkSession:
        saved = self.tokens.load()
        if saved is not None:
            try:
                return self._online(saved, listener, cancel)
            except SessionExpired:
                logger.info("the saved iLink bot token has expired; a QR login follows")
                self.tokens.forget()
        client = IlinkClient(self.base_url, timeout=self.login_timeout, cancel=cancel)
        try:
            creds = QrLogin(client, listener, cancel, qr.RefreshCap(self.qr_max_refresh),
                            timeout=self.login_timeout, code_wait=self.code_wait).run()
        finally:
            client.close()
        self.tokens.save(creds)
        self.store.start_over(creds.ilink_bot_id)
        return self._online(creds, listener, cancel)

    def _online(self, creds: Credentials, listener: LoginListener, cancel: threading.Event) -> IlinkSession:
        """notifystart, then a session whose poll loop runs in its own thread."""
        client = IlinkClient(creds.baseurl, timeout=self.login_timeout, cancel=cancel, token=creds.bot_token)
        try:
            client.call("msg/notifystart")
        except SessionExpired:
            client.close()
            self.tokens.forget()
            raise
        except IlinkRefused as exc:
            # An announcement iLink did not take is no reason to stay offline.
            logger.warning("iLink did not take notifystart (%s); going on", exc)
        except BaseException:
            client.close()
            raise
        session = IlinkSession(creds.ilink_bot_id, creds.bot_token, creds.baseurl, client=client,
                               store=self.store, listener=listener, delivery_lock=self.delivery_lock,
                               poll_seconds=self.poll_seconds, login_timeout=self.login_timeout,
                               forget=self.tokens.forget)
        session.start()
        return session

    def forget(self) -> None:
        """Delete the bot token, so the next login needs a scan."""
        self.tokens.forget()


class QrLogin:
    """One attempt's QR login: QRs, scans, verification codes and redirects, every wait bounded."""

    def __init__(self, client: IlinkClient, listener: LoginListener, cancel: threading.Event,
                 cap: qr.RefreshCap, *, timeout: float, code_wait: float):
        self.client = client
        self.listener = listener
        self.cancel = cancel
        self.cap = cap
        self.timeout = timeout
        self.code_wait = code_wait
        self.base_url = client.base_url
        self.poll_url = client.base_url
        self.scheme = urlsplit(client.base_url).scheme
        self.qrcode = ""
        self.code: str | None = None       # the code to send with the next polls
        self.code_sent = False             # a code went out since iLink last asked for one
        self.scanned = False
        self.deadline = 0.0
        self.last_poll = 0.0

    def run(self) -> Credentials:
        self._new_qr()
        handlers = {"wait": self._wait, "scaned": self._scanned, "need_verifycode": self._need_code,
                    "verify_code_blocked": self._blocked, "expired": self._expired,
                    "scaned_but_redirect": self._redirect, "binded_redirect": self._already_bound,
                    "confirmed": self._confirmed}
        while True:
            answer = self._poll()
            if answer is None:
                continue  # no answer: silence, bounded by the deadline
            status = answer.get("status")
            handler = handlers.get(status) if isinstance(status, str) else None
            if handler is None:
                # Only answers this client understands count as WeChat answering (extend the deadline).
                logger.warning("iLink answered an unknown QR status %r; polling on", str(status)[:40])
                continue
            self._extend()
            creds = handler(answer)
            if creds is not None:
                return creds

    # -- waits ---------------------------------------------------------------------------------
    def _extend(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def _poll(self) -> dict | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WeChatTimeout(f"iLink did not answer get_qrcode_status within {self.timeout:g} s")
        wait = MIN_POLL_INTERVAL - (time.monotonic() - self.last_poll)
        if (wait > 0 and self.cancel.wait(wait)) or self.cancel.is_set():
            raise StopRequested("stop requested")
        self.last_poll = time.monotonic()
        answer = self.client.qrcode_status(self.poll_url, self.qrcode, self.code, min(QR_POLL_SECONDS, left))
        if self.cancel.is_set():
            raise StopRequested("stop requested")
        return answer

    def _new_qr(self) -> None:
        refresh = self.cap.new_qr()   # raises once the cap is reached, before asking for another
        answer = self.client.get_bot_qrcode()
        self.qrcode = answer["qrcode"]
        self.poll_url = self.base_url  # a redirect holds for one QR only
        self.code, self.code_sent, self.scanned = None, False, False
        self.listener.qr_ready(qr.draw(answer["qrcode_img_content"]), refresh)
        self._extend()

    def _report_scan(self) -> None:
        if not self.scanned:
            self.scanned = True
            self.cap.scanned()
            self.listener.qr_scanned()

    # -- statuses ----------------------------------------------------------------------------------
    def _wait(self, answer):
        return None

    def _scanned(self, answer):
        if self.code_sent:
            # The code was right: iLink went on to the phone's confirm.
            self.code, self.code_sent = None, False
            self.listener.qr_scanned()
        self._report_scan()

    def _need_code(self, answer):
        self._report_scan()
        self.listener.code_needed(wrong=self.code_sent)
        self.code, self.code_sent = None, False
        code = self.listener.code_entered(self.code_wait)
        if self.cancel.is_set():
            raise StopRequested("stop requested")
        if code is None:
            logger.info("nobody entered the verification code within %g s; a new QR follows", self.code_wait)
            self._new_qr()
            return
        self.code, self.code_sent = code, True
        self._extend()

    def _blocked(self, answer):
        logger.info("iLink blocked the QR after wrong verification codes; a new QR follows")
        self._new_qr()

    def _expired(self, answer):
        self._new_qr()

    def _redirect(self, answer):
        host = answer.get("redirect_host")
        if isinstance(host, str) and _HOST.match(host):
            # The scheme stays that of ILINK_BASE_URL: https in production, http for a local server.
            self.poll_url = f"{self.scheme}://{host}"
            logger.info("iLink moved the QR's polling to %s", host)
        else:
            logger.warning("iLink redirected the QR's polling without a usable redirect_host; staying")
        self._report_scan()

    def _already_bound(self, answer):
        raise LoginRefused("iLink says this WeChat bot is already connected to another client "
                           "(binded_redirect): disconnect it there, then log in again here")

    def _confirmed(self, answer) -> Credentials:
        token, bot_id = answer.get("bot_token"), answer.get("ilink_bot_id")
        if not (isinstance(token, str) and token and isinstance(bot_id, str) and bot_id):
            raise WeChatBadAnswer("iLink confirmed the login without bot_token or ilink_bot_id")
        baseurl = answer.get("baseurl")
        return Credentials(bot_token=token, ilink_bot_id=bot_id,
                           baseurl=baseurl.rstrip("/") if _http_url(baseurl) else self.base_url,
                           ilink_user_id=str(answer.get("ilink_user_id") or ""))


def _http_url(value) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
