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
import pickle
import queue
import shutil
import stat
import threading
import time

from . import bounded_http
from .backend import IncomingMessage, LoginListener
from .errors import (BackendUnavailable, QrRefreshLimit, SessionRejected, StopRequested, WeChatTimeout,
                     WeChatUnreachable)

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
    """Patch the module-level defects once per process; outside an attempt wxpy behaves as shipped."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        # Python >= 3.9 removed HTMLParser().unescape: without this every 1:1 message is lost.
        itchat.utils.htmlParser.unescape = html.unescape
        itchat.set_logging(showOnCmd=False)
        shipped_probe = itchat.components.register.test_connect
        shipped_enhance = wxpy.api.bot.enhance_connection

        def test_connect(retryTime=5):
            # Our attempt has probed WeChat already, bounded; itchat's probe would sys.exit().
            return True if getattr(_local, "ctx", None) else shipped_probe(retryTime)

        def enhance_connection(session, **kwargs):
            # wxpy mounts a 30-retry adapter on each new session; bound the session instead.
            ctx = getattr(_local, "ctx", None)
            if ctx is None:
                return shipped_enhance(session, **kwargs)
            return bounded_http.bound_session(session, ctx)

        shipped_push_login = itchat.components.login.push_login

        def push_login(core):
            # A push-login answer itchat cannot read (404, HTML, a hang) would end every attempt
            # before a QR is ever shown; without a usable push, ask for a QR instead.
            try:
                return shipped_push_login(core)
            except StopRequested:
                raise
            except Exception as exc:
                logger.info("push login unavailable (%s); asking for a QR", exc)
                ctx = getattr(_local, "ctx", None)
                if ctx is not None:
                    ctx.extend()
                return False

        itchat.components.register.test_connect = test_connect
        itchat.components.login.push_login = push_login
        wxpy.api.bot.enhance_connection = enhance_connection
        _patched = True


class WxpyBackend:
    """Logs in with the real wxpy against WECHAT_BASE_URL."""

    def __init__(self, *, base_url: str, cache_path: str, login_timeout: float, qr_max_refresh: int):
        self.base_url = base_url
        self.cache_path = cache_path
        self.login_timeout = login_timeout
        self.qr_max_refresh = qr_max_refresh
        self.hot_login_failures = 0

    def login(self, listener: LoginListener, cancel: threading.Event) -> "WxpySession":
        itchat, wxpy = _import_wxpy()
        _install_patches(itchat, wxpy)
        itchat.config.BASE_URL = self.base_url
        ctx = bounded_http.AttemptContext(self.login_timeout, cancel)
        bounded_http.probe(self.base_url, ctx)
        prepare_cache(self.cache_path)
        had_cache = os.path.getsize(self.cache_path) > 0
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
        except BaseException as exc:
            session.abandon()
            self._after_failed_login(exc, had_cache and qr.qr_count == 0 and not qr.scanned)
            raise
        finally:
            _local.ctx = None
        self.hot_login_failures = 0
        os.chmod(self.cache_path, 0o600)
        session.attach(bot, itchat)
        if session.closed:
            session.release()
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
    # Unpickling a file others can write would run their code in this process; a file that
    # is not an itchat session would make itchat fail on every attempt instead of asking a QR.
    problem = "not private" if unsafe else cache_problem(path)
    if problem:
        aside = f"{path}.{problem.split()[0]}-{int(time.time())}"
        shutil.move(path, aside)
        logger.warning("session cache %s is %s; moved to %s, a QR login follows", path, problem, aside)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        os.chmod(path, 0o600)


class _SessionUnpickler(pickle.Unpickler):
    """Loads only what itchat pickles: plain data and itchat's own storage classes."""

    def find_class(self, module, name):
        if module.split(".")[0] == "itchat" or (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a session cache")


_SAFE_GLOBALS = {("builtins", "dict"), ("builtins", "list"), ("builtins", "set"),
                 ("collections", "OrderedDict"), ("copy_reg", "_reconstructor"),
                 ("copyreg", "_reconstructor"), ("builtins", "object")}


def cache_problem(path: str) -> str:
    """Why the session cache cannot be used, or "" when it looks like an itchat session."""
    if os.path.getsize(path) == 0:
        return ""
    try:
        with open(path, "rb") as handle:
            status = _SessionUnpickler(handle).load()
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(status, dict) or not {"version", "loginInfo", "cookies", "storage"} <= set(status):
        return "unreadable (not an itchat session)"
    return ""


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
            self._dead(qrcode)
        self._pace()

    def _new_qr(self, png: bytes) -> None:
        expiries = self.qr_count
        if expiries > self.max_refresh:
            raise QrRefreshLimit(f"the login QR expired {expiries} times with nobody scanning it")
        self.qr_count += 1
        self.scanned = False
        self.listener.qr_ready(png, expiries)

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


class WxpySession:
    """A logged-in wxpy Bot: delivers messages, reports the logout, cleans up after itself."""

    def __init__(self, listener: LoginListener, ctx: bounded_http.AttemptContext, cache_path: str):
        self.listener = listener
        self.ctx = ctx
        self.cache_path = cache_path
        self.bot = None
        self.account = ""
        self._itchat = None
        self.inbox: DeliveryQueue | None = None
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
        if self.inbox is not None:
            self.inbox.close()
        self.release()
        self.listener.logged_out(reason, session_ended=self.ctx.session_ended)

    def attach(self, bot, itchat) -> None:
        """Take over a Bot that has just logged in and start delivering its messages."""
        self.bot, self._itchat = bot, itchat
        self.account = bot.self.name
        # wxpy's own wrapper, installed after login, calls requests.Session.request directly,
        # past ours: wrap again so heartbeats, timeouts and logout reasons are seen while online.
        bounded_http.wrap_requests(bot.core.s, self.ctx)
        bot.register(except_self=False, run_async=False)(self._deliver)
        self.inbox = DeliveryQueue.replace(bot)
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

    def problem(self, silence: float) -> str:
        """Why this session is dead though no logout was reported, or "" when it is alive."""
        listener = self.bot.listening_thread if self.bot else None
        if listener is not None and not listener.is_alive() and not self._closing:
            return "the message listener thread died"
        last = self.ctx.last_sync_ok
        if last is None or time.monotonic() - last > silence:
            quiet = "never" if last is None else f"{time.monotonic() - last:.0f} s"
            return f"no sync with WeChat for {quiet} (limit {silence:g} s)"
        return ""

    def stop(self) -> None:
        """Go offline without logging out, keeping the cache so the next start needs no scan."""
        if not self._begin_close():
            return
        self.ctx.close()
        self.inbox.close()
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
        self.inbox.close()
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


class DeliveryQueue(queue.Queue):
    """itchat's message queue, made unable to lose a message once the bot goes offline.

    Until close() it is the queue wxpy's listener reads. After it, anything already queued or
    still arriving from itchat's receiving thread is delivered at once by the caller's thread.
    """

    def __init__(self, bot):
        super().__init__()
        self.bot = bot
        self.closed = False

    @classmethod
    def replace(cls, bot) -> "DeliveryQueue":
        inbox = cls(bot)
        old, bot.core.msgList = bot.core.msgList, inbox
        while not old.empty():
            inbox.put(old.get_nowait())
        return inbox

    def put(self, item, block=True, timeout=None):
        if self.closed:
            self._deliver(item)
        else:
            super().put(item, block, timeout)

    def close(self) -> None:
        """Stop wxpy's listener, then deliver what is left, in order, from this thread."""
        self.closed = True
        self.bot.is_listening = False
        thread = self.bot.listening_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        while True:
            try:
                self._deliver(self.get_nowait())
            except queue.Empty:
                return

    def _deliver(self, raw) -> None:
        from wxpy.api.messages import Message

        try:
            message = Message(raw, self.bot)
            config = self.bot.registered.get_config(message)
            if config:
                config.func(message)
        except Exception:
            logger.exception("could not deliver a message received while going offline: %r", raw)


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
