"""wxpy and itchat as shipped, made safe: quiet import, module-level patches, a safer Bot class.

See WXPY_NOTES.md for the defects. Outside a geekai login attempt every patch falls through to
the shipped behaviour, so other users of wxpy in the same process are not affected.
"""
from __future__ import annotations

import contextlib
import html
import io
import logging
import queue
import sys
import threading

from . import bounded_http
from .backend import UNREADABLE
from .errors import BackendUnavailable, StopRequested
from .session_cache import RESTRICTED_PICKLE

logger = logging.getLogger(__name__)


# The attempt (AttemptContext) of the thread that is constructing a Bot, if any.
local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def import_wxpy():
    """Import wxpy quietly: itchat's first import writes a block character to stdout."""
    with _patch_lock:
        # sys.stdout is the whole process's: swap it only for the one import that writes, never
        # on later attempts, or output of other threads (a CLI, the tests) would vanish.
        quiet = contextlib.redirect_stdout(io.StringIO()) if "itchat" not in sys.modules else contextlib.nullcontext()
        try:
            with quiet:
                import itchat
                import wxpy
                import wxpy.api.bot
        except ImportError as exc:
            raise BackendUnavailable(f"wxpy is not installed: {exc}") from exc
    return itchat, wxpy


def install_patches(itchat, wxpy) -> None:
    """Patch the module-level defects once per process; outside an attempt wxpy behaves as shipped."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        # Python >= 3.9 removed HTMLParser().unescape: without this every 1:1 message is lost.
        itchat.utils.htmlParser.unescape = html.unescape
        # A session cache (or puid map) is unpickled: only plain data, in every caller, always.
        import itchat.components.hotreload
        import wxpy.utils.puid_map
        itchat.components.hotreload.pickle = RESTRICTED_PICKLE
        wxpy.utils.puid_map.pickle = RESTRICTED_PICKLE
        itchat.set_logging(showOnCmd=False)
        shipped_probe = itchat.components.register.test_connect
        shipped_enhance = wxpy.api.bot.enhance_connection

        def test_connect(retryTime=5):
            # Our attempt has probed WeChat already, bounded; itchat's probe would sys.exit().
            return True if getattr(local, "ctx", None) else shipped_probe(retryTime)

        def enhance_connection(session, **kwargs):
            # wxpy mounts a 30-retry adapter on each new session; bound the session instead.
            ctx = getattr(local, "ctx", None)
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
                ctx = getattr(local, "ctx", None)
                if ctx is not None:
                    ctx.extend()
                return False

        shipped_produce = itchat.components.messages.produce_msg

        def produce_msg(core, msg_list):
            # itchat reads a whole sync batch at once: one message it cannot read loses them all.
            produced = []
            for raw in msg_list:
                try:
                    produced.extend(shipped_produce(core, [raw]))
                except Exception as exc:
                    logger.error("itchat cannot read a message from WeChat (%s: %s); passing it on raw: %r",
                                 type(exc).__name__, exc, raw)
                    produced.append(dict(raw, Type=UNREADABLE, Text=str(raw.get("Content", ""))))
            return produced

        itchat.components.login.produce_msg = produce_msg
        itchat.components.hotreload.produce_msg = produce_msg
        itchat.components.register.test_connect = test_connect
        itchat.components.login.push_login = push_login
        wxpy.api.bot.enhance_connection = enhance_connection
        _patched = True


_bot_classes: dict = {}


def bot_class(wxpy):
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

        def start_delivering(self, deliver):
            """Hand every queued and future message to deliver(raw), in order."""
            self._deliver_raw = deliver
            self._hold_delivery = False
            self.start()

        def _listen(self):
            # wxpy's loop builds each Message outside its try: one malformed message would end
            # the listener thread, and every later message would wait for ever in the queue.
            self.is_listening = True
            try:
                while self.alive and self.is_listening:
                    try:
                        raw = self.core.msgList.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    self._deliver_raw(raw)
            finally:
                self.is_listening = False

    _bot_classes["bot"] = GeekaiBot
    return GeekaiBot
