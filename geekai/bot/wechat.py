"""The wxpy backend: wxpy/itchat with their defects patched and every wait bounded.

See WXPY_NOTES.md for the defects. wxpy is imported on the first login, never on the path
to the web server's first answer.
"""
from __future__ import annotations

import atexit
import contextlib
import html
import io
import logging
import os
import shutil
import stat
import threading
import time

from . import bounded_http
from .backend import IncomingMessage, LoginListener
from .errors import BackendUnavailable, QrRefreshLimit, SessionRejected, StopRequested

logger = logging.getLogger(__name__)

# itchat polls the login URL without pause; a server that answers at once would be hammered.
MIN_POLL_INTERVAL = 0.2

_local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def _import_wxpy():
    """Import wxpy quietly (importing itchat prints and adds a console log handler)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import itchat
            import wxpy
            import wxpy.api.bot
    except ImportError as exc:
        raise BackendUnavailable(f"wxpy is not installed: {exc}") from exc
    return itchat, wxpy


def _install_patches(itchat, wxpy) -> None:
    """Patch the module-level defects once per process."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        # Python >= 3.9 removed HTMLParser().unescape: without this every 1:1 message is lost.
        itchat.utils.htmlParser.unescape = html.unescape
        itchat.set_logging(showOnCmd=False)
        # The adapter probes WeChat itself, bounded; itchat's probe would sys.exit() instead.
        itchat.components.register.test_connect = lambda retryTime=5: True
        itchat.utils.test_connect = itchat.components.register.test_connect
        # wxpy mounts a 30-retry adapter on each new session; bound the session instead.
        wxpy.api.bot.enhance_connection = lambda session, **_: bounded_http.bound_session(session, _local.ctx)
        _patched = True


class WxpyBackend:
    """Logs in with the real wxpy against WECHAT_BASE_URL."""

    def __init__(self, *, base_url: str, cache_path: str, login_timeout: float, qr_max_refresh: int):
        self.base_url = base_url
        self.cache_path = cache_path
        self.login_timeout = login_timeout
        self.qr_max_refresh = qr_max_refresh

    def login(self, listener: LoginListener, cancel: threading.Event) -> "WxpySession":
        itchat, wxpy = _import_wxpy()
        _install_patches(itchat, wxpy)
        itchat.config.BASE_URL = self.base_url
        ctx = bounded_http.AttemptContext(self.login_timeout, cancel)
        bounded_http.probe(self.base_url, ctx)
        prepare_cache(self.cache_path)
        session = WxpySession(listener, ctx, self.cache_path)
        qr = QrWatcher(listener, ctx, self.qr_max_refresh)
        bot_class = _bot_class(wxpy)
        _local.ctx = ctx
        try:
            bot = bot_class(
                cache_path=self.cache_path,
                qr_callback=qr.callback,
                login_callback=session.went_online,
                logout_callback=session.went_offline,
            )
        except BaseException:
            session.abandon()
            raise
        finally:
            _local.ctx = None
        os.chmod(self.cache_path, 0o600)
        session.attach(bot, itchat)
        if session.closed:
            session.release()
            raise SessionRejected(ctx.last_sync_problem or "WeChat ended the session right after the login")
        return session


    def forget(self) -> None:
        """Delete the session cache, so the next login needs a scan."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.cache_path)


def prepare_cache(path: str) -> None:
    """Make sure the session cache is ours and private before itchat unpickles or writes it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        # Created empty with 0600 so that itchat's open('wb') keeps the mode; an empty file
        # reads as "no cache" and itchat falls back to a QR.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    unsafe = (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
              or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    if unsafe:
        # Unpickling a file others can write would run their code in this process.
        aside = f"{path}.unsafe-{int(time.time())}"
        shutil.move(path, aside)
        logger.warning("session cache %s was not private; moved to %s, a QR login follows", path, aside)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        os.chmod(path, 0o600)


class QrWatcher:
    """itchat's qr_callback: reports QRs and scans, counts expiries, and cancels the login."""

    def __init__(self, listener: LoginListener, ctx: bounded_http.AttemptContext, max_refresh: int):
        self.listener = listener
        self.ctx = ctx
        self.max_refresh = max_refresh
        self.qr_count = 0
        self.scanned = False
        self.last_poll = 0.0

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
                self.listener.qr_scanned(push=(status == "408"))
        elif status not in ("200", "408"):
            self.scanned = False
        self._pace()

    def _new_qr(self, png: bytes) -> None:
        expiries = self.qr_count
        if expiries > self.max_refresh:
            raise QrRefreshLimit(f"the login QR expired {expiries} times with nobody scanning it")
        self.qr_count += 1
        self.scanned = False
        self.listener.qr_ready(png, expiries)

    def _pace(self) -> None:
        wait = MIN_POLL_INTERVAL - (time.monotonic() - self.last_poll)
        if wait > 0 and self.ctx.cancel.wait(wait):
            raise StopRequested("stop requested")
        self.last_poll = time.monotonic()


class WxpySession:
    """A logged-in wxpy Bot: delivers messages, reports the logout, cleans up after itself."""

    def __init__(self, listener: LoginListener, ctx: bounded_http.AttemptContext, cache_path: str):
        self.listener = listener
        self.ctx = ctx
        self.cache_path = cache_path
        self.bot = None
        self.account = ""
        self._itchat = None
        self._closing = False
        self._lock = threading.Lock()

    def went_online(self) -> None:
        """itchat's login_callback: it fires before Bot() returns, so only switch timeouts."""
        self.ctx.online = True
        self.ctx.last_sync_ok = time.monotonic()

    def went_offline(self) -> None:
        """itchat's logout_callback, in its receiving thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        reason = self.ctx.last_sync_problem or "WeChat session ended"
        self.release()
        self.listener.logged_out(reason, session_ended=self.ctx.session_ended)

    def attach(self, bot, itchat) -> None:
        """Take over a Bot that has just logged in and start delivering its messages."""
        self.bot, self._itchat = bot, itchat
        self.account = bot.self.name
        bot.register(except_self=False, run_async=False)(self._deliver)
        bot.start_delivering()

    @property
    def closed(self) -> bool:
        return self._closing

    def abandon(self) -> None:
        """The login failed: a late logout callback of this attempt must report nothing."""
        with self._lock:
            self._closing = True

    def last_heartbeat(self) -> float | None:
        return self.ctx.last_sync_ok

    def stop(self) -> None:
        """Go offline without logging out, keeping the cache so the next start needs no scan."""
        if not self._begin_close():
            return
        try:
            self.bot.dump_login_status(self.cache_path)
            os.chmod(self.cache_path, 0o600)
        except Exception:
            logger.exception("could not save the WeChat session cache")
        self.bot.core.alive = False
        self.release()

    def logout(self) -> None:
        """Log out at WeChat and forget the cache."""
        if not self._begin_close():
            return
        try:
            self.bot.logout()
        except Exception:
            logger.warning("logout request to WeChat failed", exc_info=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.cache_path)
        self.release()

    def _begin_close(self) -> bool:
        with self._lock:
            if self._closing or self.bot is None:
                return False
            self._closing = True
            return True

    def release(self) -> None:
        """Undo what each Bot leaves behind for ever (WXPY_NOTES 10)."""
        bot = self.bot
        if bot is None:
            return
        bot.is_listening = False
        atexit.unregister(bot._cleanup)
        with contextlib.suppress(Exception):
            bot.temp_dir.cleanup()
        with contextlib.suppress(ValueError):
            self._itchat.instanceList.remove(bot)
        with contextlib.suppress(Exception):
            bot.core.s.close()

    def _deliver(self, msg) -> None:
        try:
            message = to_incoming(msg)
        except Exception:
            logger.exception("could not read an incoming message; raw: %r", getattr(msg, "raw", None))
            return
        self.listener.message(message)


def to_incoming(msg) -> IncomingMessage:
    """A wxpy Message as an IncomingMessage."""
    raw = dict(msg.raw)
    sender = msg.sender
    return IncomingMessage(
        id=str(raw.get("NewMsgId") or raw.get("MsgId") or ""),
        type=str(msg.type),
        text=msg.text or "",
        sender=raw.get("FromUserName", ""),
        sender_name=getattr(sender, "name", "") or "",
        sender_contact=dict(getattr(sender, "raw", {}) or {}),
        raw=raw,
        reply=msg.reply,
    )


_bot_classes: dict = {}


def _bot_class(wxpy):
    """A wxpy.Bot that delivers nothing until handlers are registered and never leaks on failure."""
    if "bot" in _bot_classes:
        return _bot_classes["bot"]

    class GeekaiBot(wxpy.Bot):
        _hold_delivery = True

        def __init__(self, **kwargs):
            try:
                super().__init__(**kwargs)
            except BaseException:
                # wxpy appended this Bot to itchat.instanceList before logging in.
                import itchat
                with contextlib.suppress(ValueError):
                    itchat.instanceList.remove(self)
                with contextlib.suppress(Exception):
                    self.core.alive = False
                    self.core.s.close()
                raise

        def start(self):
            # wxpy starts listening inside __init__, before anyone could register a handler:
            # messages (those of a hot login included) wait in itchat's queue instead.
            if not self._hold_delivery:
                super().start()

        def start_delivering(self):
            self._hold_delivery = False
            self.start()

    _bot_classes["bot"] = GeekaiBot
    return GeekaiBot
