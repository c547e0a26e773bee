"""The wxpy backend: logs in with the real wxpy, every wait bounded, every QR reported.

wxpy is imported on the first login, never on the path to the web server's first answer.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time

from . import bounded_http, wxpy_patches
from .backend import LoginListener
from .errors import LoginRefused, StopRequested, SessionRejected, WeChatTimeout, WeChatUnreachable
from .qr import RefreshCap
from .session_cache import prepare_cache
from .wxpy_session import WxpySession

logger = logging.getLogger(__name__)

# itchat polls the login URL without pause; a server that answers at once would be hammered.
MIN_POLL_INTERVAL = 0.2
# Since 2025 WeChat ends most web sessions right after their login (synccheck 1102): two in a row
# ended this soon mean it refuses this account's web login, not a passing fault.
EARLY_KICK_SECONDS = 60.0
# Retcodes that are a logout (on the phone, 1100, or by the client, 1101), not WeChat's own doing.
LOGOUT_CODES = ("1100", "1101")


class KickWatch:
    """Counts web sessions that WeChat ended right after their login, across attempts."""

    def __init__(self, window: float = EARLY_KICK_SECONDS):
        self.window = window
        self.in_a_row = 0

    def refusal(self, reason: str, online_for: float, end_code: str) -> str:
        """Why to wait for a person instead of showing yet another QR, or "" to go on as usual.

        end_code: the retcode WeChat ended the session with ("" when it did not end it).
        """
        if not end_code or end_code in LOGOUT_CODES:
            return ""  # a lost connection or a logout says nothing about the account
        if online_for > self.window:
            self.in_a_row = 0
            return ""
        self.in_a_row += 1
        if self.in_a_row < 2:
            return ""
        self.in_a_row = 0
        return (f"WeChat ended the web session right after the login twice in a row ({reason}): WeChat "
                "refuses web logins for this account. Use Tencent's official bot API instead: set BOT_BACKEND=ilink")


class WxpyBackend:
    """Logs in with the real wxpy against WECHAT_BASE_URL."""

    def __init__(self, *, base_url: str, cache_path: str, login_timeout: float, qr_max_refresh: int):
        self.base_url = base_url
        self.cache_path = cache_path
        self.login_timeout = login_timeout
        self.qr_max_refresh = qr_max_refresh
        self.hot_login_failures = 0
        self.kicks = KickWatch()

    def login(self, listener: LoginListener, cancel: threading.Event) -> "WxpySession":
        itchat, wxpy = wxpy_patches.import_wxpy()
        wxpy_patches.install_patches(itchat, wxpy)
        itchat.config.BASE_URL = self.base_url
        ctx = bounded_http.AttemptContext(self.login_timeout, cancel)
        bounded_http.probe(self.base_url, ctx)
        cache_problem = prepare_cache(self.cache_path)
        had_cache = os.path.getsize(self.cache_path) > 0
        session = WxpySession(listener, ctx, self.cache_path, self.kicks)
        qr = QrWatcher(listener, ctx, self.qr_max_refresh, note=cache_problem)
        bot_class = wxpy_patches.bot_class(wxpy)
        wxpy_patches.local.ctx = ctx
        try:
            bot = bot_class(
                cache_path=self.cache_path,
                qr_callback=qr.callback,
                login_callback=session.went_online,
                logout_callback=session.went_offline,
            )
        except BaseException as exc:
            session.abandon()
            self._after_failed_login(exc, had_cache and qr.qr_count == 0 and not qr.scanned)
            raise
        finally:
            wxpy_patches.local.ctx = None
        self.hot_login_failures = 0
        os.chmod(self.cache_path, 0o600)
        session.attach(bot, itchat)
        if session.closed:
            session.release()
            if session.refusal:
                raise LoginRefused(session.refusal)
            raise SessionRejected(ctx.last_sync_problem or "WeChat ended the session right after the login")
        return session

    def _after_failed_login(self, exc: BaseException, in_hot_login: bool) -> None:
        """A cached session whose server stays unreachable (while WeChat's login host answers)
        would fail every attempt without ever showing a QR: drop it after the second time."""
        if not (in_hot_login and isinstance(exc, (WeChatUnreachable, WeChatTimeout))):
            return
        self.hot_login_failures += 1
        if self.hot_login_failures >= 2:
            aside = f"{self.cache_path}.stale-{int(time.time())}"
            shutil.move(self.cache_path, aside)
            logger.warning("cached WeChat session unreachable twice; moved to %s, a QR login follows", aside)
            self.hot_login_failures = 0

    def forget(self) -> None:
        """Delete the session cache, so the next login needs a scan."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.cache_path)


class QrWatcher:
    """itchat's qr_callback: reports QRs and scans, counts expiries, and cancels the login."""

    def __init__(self, listener: LoginListener, ctx: bounded_http.AttemptContext, max_refresh: int,
                 note: str = ""):
        self.listener = listener
        self.note = note        # why this login needs a QR, shown with the first one
        self.ctx = ctx
        self.cap = RefreshCap(max_refresh)
        self.scanned = False    # the current QR was scanned (a confirm or cancel may follow)
        self.last_poll = 0.0

    @property
    def qr_count(self) -> int:
        return self.cap.qr_count

    def callback(self, uuid=None, status=None, qrcode=b""):
        # Raising here is the only way to stop Bot() from another thread (WXPY_NOTES 5).
        if self.ctx.cancel.is_set():
            raise StopRequested("stop requested")
        self.ctx.extend()
        if status == "0":
            self._new_qr(qrcode)
        elif status == "201" or (status == "408" and not qrcode and not self.scanned):
            # 201: scanned. An empty QR with 408 is a push login waiting on the phone.
            if not self.scanned:
                self.scanned = True
                self.cap.scanned()
                self.listener.qr_scanned(push=(status == "408"))
        elif status not in ("200", "408"):
            self._dead(qrcode)
        self._pace()

    def _new_qr(self, png: bytes) -> None:
        refresh = self.cap.new_qr()
        self.scanned = False
        if self.note and refresh == 0:
            self.listener.qr_ready(png, refresh, note=self.note)
        else:
            self.listener.qr_ready(png, refresh)

    def _dead(self, qrcode: bytes) -> None:
        """The QR or push request died; a new one follows."""
        self.scanned = False
        if not qrcode and self.ctx.http is not None:
            # An unanswered push login: itchat would push again for ever (it keys on the
            # wxuin cookie) and never show a QR. Without the cookie it fetches a QR.
            jar = self.ctx.http.cookies
            for cookie in [c for c in jar if c.name == "wxuin"]:
                jar.clear(cookie.domain, cookie.path, cookie.name)

    def _pace(self) -> None:
        wait = MIN_POLL_INTERVAL - (time.monotonic() - self.last_poll)
        if wait > 0 and self.ctx.cancel.wait(wait):
            raise StopRequested("stop requested")
        self.last_poll = time.monotonic()
