"""A logged-in wxpy Bot: message delivery that loses nothing, logout reports, cleanup."""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time

from . import bounded_http
from .backend import UNREADABLE, IncomingMessage, LoginListener
from .errors import NotOnline, SendFailed, StopRequested

logger = logging.getLogger(__name__)

# How long going offline waits for a send in flight to end, so that its outcome is known.
SEND_FINISH_WAIT = 2.0


class WxpySession:
    """A logged-in wxpy Bot: delivers messages, reports the logout, cleans up after itself."""

    def __init__(self, listener: LoginListener, ctx: bounded_http.AttemptContext, cache_path: str, kicks=None):
        self.listener = listener
        self.ctx = ctx
        self.cache_path = cache_path
        self.kicks = kicks          # the backend's KickWatch: sessions WeChat ended right after login
        self.online_at: float | None = None
        self.refusal = ""
        self.bot = None
        self.account = ""
        self._itchat = None
        self.inbox: DeliveryQueue | None = None
        self._closing = False
        self._lock = threading.Lock()
        # One send at a time: the send queue's thread and handlers' replies share itchat's session.
        self._send_lock = threading.Lock()

    def went_online(self) -> None:
        """itchat's login_callback: it fires before Bot() returns, so only switch timeouts."""
        self.ctx.online = True
        self.ctx.last_sync_ok = self.online_at = time.monotonic()

    def went_offline(self) -> None:
        """itchat's logout_callback, in its receiving thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        reason = self.ctx.last_sync_problem or "WeChat session ended"
        if self.kicks is not None and self.online_at is not None:
            self.refusal = self.kicks.refusal(reason, time.monotonic() - self.online_at, self.ctx.end_code)
        # Reported first: the state is recorded without waiting for the listener thread to end;
        # what is still queued is delivered after, in order (the supervisor takes late messages).
        self.listener.logged_out(self.refusal or reason, session_ended=self.ctx.session_ended,
                                 needs_person=bool(self.refusal))
        if self.inbox is not None:
            self.inbox.close()
        self.release()

    def attach(self, bot, itchat) -> None:
        """Take over a Bot that has just logged in and start delivering its messages."""
        self.bot, self._itchat = bot, itchat
        self.account = bot.self.name
        # wxpy's own wrapper, installed after login, calls requests.Session.request directly,
        # past ours: wrap again so heartbeats, timeouts and logout reasons are seen while online.
        bounded_http.wrap_requests(bot.core.s, self.ctx)
        self.inbox = DeliveryQueue.replace(bot, self.deliver, self.read)
        bot.start_delivering(self.deliver)

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

    def send_text(self, to: str, text: str) -> None:
        """Send a text to the contact whose contact id (see contact_id) is `to`, from any thread.

        Raises SendFailed: permanent for a contact that is unknown or ambiguous, or that WeChat
        refuses (1204: not a friend); transient for network errors, a rate limit, a logout.
        """
        from wxpy.api.chats import Chat
        from wxpy.exceptions import ResponseError

        with self._send_lock:
            if self._closing or self.bot is None:
                raise NotOnline("the bot went offline")
            record = self._resolve(to)
            try:
                Chat(record, self.bot).send_msg(text)
            except ResponseError as exc:
                raise refused(to, exc.err_code, exc.err_msg) from exc
            except StopRequested:  # the session closed before the request went out
                raise NotOnline("the bot went offline") from None
            except (OSError, ValueError) as exc:  # requests' errors are OSErrors; ValueError: garbage
                if self._closing:  # cut off by going offline: WeChat may have it already
                    raise SendFailed("interrupted: the bot went offline while WeChat had the message, so it may "
                                     "or may not have arrived; it is not sent again automatically",
                                     permanent=True) from exc
                raise SendFailed(f"could not reach WeChat to send: {type(exc).__name__}: {exc}"[:300],
                                 permanent=False) from exc

    def _resolve(self, to: str) -> dict:
        """The one contact record whose contact id is `to`, among this login's contacts."""
        core = self.bot.core
        with core.storageClass.updateLock:
            records = [dict(c) for c in (*core.memberList, *core.chatroomList, *core.mpList)]
            own = core.storageClass.userName
        found = {r.get("UserName"): r for r in records if r.get("UserName") != own and contact_id(r) == to}
        if not found:
            raise SendFailed(f"unknown contact {to!r}: no friend, group or official account of {self.account}"
                             " has this remark name or nickname (use the `contact` of a received message)",
                             permanent=True)
        if len(found) > 1:
            raise SendFailed(f"ambiguous contact {to!r}: {len(found)} contacts of {self.account} are called so;"
                             " give each a different remark name (备注) in WeChat and send to that", permanent=True)
        return next(iter(found.values()))

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
        # New sends are refused from here on; one in flight may finish and report its outcome.
        if self._send_lock.acquire(timeout=SEND_FINISH_WAIT):
            self._send_lock.release()
        return True

    def release(self) -> None:
        """Undo what each Bot leaves behind for ever (docs/protocol-notes.md#10-every-bot-leaks)."""
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

    def read(self, raw: dict) -> IncomingMessage:
        """One message as it arrives from itchat, read at once: its sender and chat are looked up
        while the contact lists exist (itchat's logout empties them, and a message can wait in the
        queue past a logout while a handler waits for a locked database). An unreadable one goes raw."""
        try:
            message = to_incoming(raw, self.bot)
        except Exception as exc:
            logger.error("wxpy cannot read a message (%s: %s); passing it on raw: %r", type(exc).__name__, exc, raw)
            message = raw_incoming(raw)
        if not message.sender_contact and message.sender:
            message.sender_contact = self._contact(message.sender)
        return message

    def deliver(self, message: IncomingMessage) -> None:
        """Pass one message, read when it arrived, to the handlers."""
        self.listener.message(message)

    def _contact(self, user_name: str) -> dict:
        """The sender's contact record from itchat's lists (a payment check needs its flags)."""
        core = self.bot.core
        for search in (core.search_mps, core.search_friends, core.search_chatrooms):
            with contextlib.suppress(Exception):
                found = search(userName=user_name)
                if found:
                    return dict(found)
        return {}


class DeliveryQueue(queue.Queue):
    """itchat's message queue, made unable to lose a message once the bot goes offline.

    Until close() it is the queue wxpy's listener reads. After it, anything already queued or
    still arriving from itchat's receiving thread is delivered at once by the caller's thread.
    """

    def __init__(self, bot, deliver, read):
        super().__init__()
        self.bot = bot
        self.deliver = deliver
        self.read = read  # raw dict -> IncomingMessage, when it arrives
        self.closed = False

    @classmethod
    def replace(cls, bot, deliver, read) -> "DeliveryQueue":
        inbox = cls(bot, deliver, read)
        old, bot.core.msgList = bot.core.msgList, inbox
        while not old.empty():
            inbox.put(old.get_nowait())
        return inbox

    def put(self, item, block=True, timeout=None):
        item = self.read(item)  # in itchat's receiving thread, while the contacts are known
        with self.mutex:   # never queued after close() has taken the rest: delivered here instead
            if not self.closed:
                self._put(item)
                self.unfinished_tasks += 1
                self.not_empty.notify()
                return
        self.deliver(item)

    def get(self, block=True, timeout=None):
        """What wxpy's listener polls (every 0.5 s); a close() wakes it at once, and from then on
        it gets nothing: close() delivers the rest itself, in order."""
        with self.not_empty:
            if block:
                self.not_empty.wait_for(lambda: self._qsize() or self.closed, timeout)
            if self.closed or not self._qsize():
                raise queue.Empty
            item = self._get()
            self.not_full.notify()
            return item

    def close(self) -> None:
        """Stop wxpy's listener, then deliver what is left, in order, from this thread."""
        with self.not_empty:
            self.closed = True
            self.not_empty.notify_all()   # the listener's poll ends now, not after its 0.5 s
        self.bot.is_listening = False
        thread = self.bot.listening_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        while True:
            with self.mutex:
                if not self._qsize():
                    return
                item = self._get()
            self.deliver(item)


def to_incoming(raw: dict, bot) -> IncomingMessage:
    """A message from itchat's queue as an IncomingMessage, read through wxpy."""
    from wxpy.api.messages import Message

    msg = Message(raw, bot)
    sender = msg.sender
    return IncomingMessage(
        id=_message_id(raw),
        type=str(msg.type),
        text=msg.text or "",
        sender=raw.get("FromUserName", ""),
        sender_name=getattr(sender, "name", "") or "",
        contact_id=_chat_id(msg),
        sender_contact=dict(getattr(sender, "raw", {}) or {}),
        raw=dict(raw),
        reply=msg.reply,
    )


def _chat_id(msg) -> str:
    """The contact id of the chat a message belongs to: its sender, or the group it came in."""
    try:
        return contact_id(getattr(msg.chat, "raw", None) or {})
    except Exception:  # wxpy's lookup of the chat failed: the message still goes to the handlers
        logger.warning("no contact id for message %s", msg.id, exc_info=True)
        return ""


def contact_id(record: dict) -> str:
    """A contact's id that survives logins: its remark name (备注), else its nickname (or group name).

    UserName changes at every login. The remark is set by the bot's owner, so it stays put and
    tells namesakes apart; without one, the nickname is the contact's own choice. "" when unnamed.
    """
    return str(record.get("RemarkName") or record.get("NickName") or "")


# Web WeChat's answers to webwxsendmsg (BaseResponse.Ret) that a retry cannot change.
_REFUSED_FOR_GOOD = {1204: "WeChat refused the recipient (Ret 1204: not a friend of the bot's account)"}
_LOGGED_OUT = {1100, 1101, 1102}


def refused(to: str, code, message: str) -> SendFailed:
    """SendFailed for a webwxsendmsg answer whose Ret is not 0."""
    try:
        code = int(code)
    except (TypeError, ValueError):
        pass
    if code in _REFUSED_FOR_GOOD:
        return SendFailed(f"{_REFUSED_FOR_GOOD[code]}: {to!r}", permanent=True)
    if code == 1205:
        return SendFailed("WeChat says the bot sends too often (Ret 1205); it is tried again later", permanent=False)
    if code in _LOGGED_OUT:
        return SendFailed(f"the bot's WeChat session ended (Ret {code}); it is sent after the next login",
                          permanent=False)
    return SendFailed(f"WeChat did not take the message (Ret {code}: {message or 'no reason given'})",
                      permanent=False)


def raw_incoming(raw) -> IncomingMessage:
    """A message that neither itchat nor wxpy could read, as it came: handlers may still want it."""
    raw = dict(raw) if isinstance(raw, dict) else {"Content": repr(raw)}
    return IncomingMessage(id=_message_id(raw), type=UNREADABLE, text=str(raw.get("Content") or ""),
                           sender=str(raw.get("FromUserName") or ""), sender_name="", raw=raw)


def _message_id(raw: dict) -> str:
    return str(raw.get("NewMsgId") or raw.get("MsgId") or "")
