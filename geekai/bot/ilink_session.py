"""A logged-in iLink bot: the getupdates loop, delivery that neither loses nor repeats, sending.

The loop long-polls getupdates (each wait bounded by the server's longpolling_timeout_ms plus a
margin), hands each new message to the handlers, records it as handed over, and only then stores
the batch's cursor: a restart, a crash or a redelivered batch resumes from the last batch handled,
and the messages already handed over are dropped by their message_id. A long poll that gets no
answer is silence for the watchdog; any other failure ends the session with a classified reason.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable, Protocol

from .backend import LoginListener
from .errors import BotFailure, SendFailed, StopRequested, WeChatTimeout
from .ilink_api import SEND_REFUSED, IlinkClient, IlinkRefused, SessionExpired
from .ilink_messages import is_from_bot, sent_at, to_incoming

logger = logging.getLogger(__name__)

# iLink lets a bot answer a person only within about 24 hours of that person's last message.
REPLY_WINDOW = 24 * 3600
POLL_MARGIN = 5.0
MAX_POLL_SECONDS = 300.0
NOTIFY_STOP_SECONDS = 3.0


class IlinkStore(Protocol):
    """What the iLink adapter keeps across restarts; the runtime passes one backed by the database."""

    def resume(self, bot_id: str) -> str: ...            # the cursor to continue from ("" at first)
    def save_cursor(self, bot_id: str, cursor: str) -> None: ...
    def start_over(self, bot_id: str) -> None: ...       # a new QR login: the old cursor is void
    def seen(self, message_id: str) -> bool: ...         # handed to the handlers before?
    def delivered(self, message_id: str, contact: str, context_token: str, at: float) -> None: ...
    def context(self, contact: str) -> tuple[str, float] | None: ...   # last context_token, its time


class IlinkSession:
    """One bot token's life online, from notifystart to a stop, a logout or a failure."""

    def __init__(self, bot_id: str, token: str, api_url: str, *, client: IlinkClient, store: IlinkStore,
                 listener: LoginListener, delivery_lock: threading.Lock, poll_seconds: float,
                 login_timeout: float, forget: Callable[[], None]):
        self.account = bot_id
        self.store = store
        self.listener = listener
        self.login_timeout = login_timeout
        self.poll_seconds = poll_seconds
        self.margin = min(POLL_MARGIN, login_timeout)
        self._token, self._api_url = token, api_url
        self._forget = forget
        self._delivery_lock = delivery_lock
        self._stopped = threading.Event()
        client.close()  # the login's; this session makes its own, cancelled by its stop
        self._poller = IlinkClient(api_url, timeout=login_timeout, cancel=self._stopped, token=token)
        self._sender = IlinkClient(api_url, timeout=login_timeout, cancel=self._stopped, token=token)
        self._send_lock = threading.Lock()
        self._contexts: dict[str, tuple[str, float]] = {}
        self._contexts_lock = threading.Lock()
        self._heartbeat = time.monotonic()
        self._thread: threading.Thread | None = None
        self._cursor = ""

    # -- the BotSession interface -----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"geekai-ilink-{self.account}", daemon=True)
        self._thread.start()

    def last_heartbeat(self) -> float | None:
        return self._heartbeat

    def problem(self, silence: float) -> str:
        """Why this session is dead though no failure was reported, or "" when it is alive."""
        if self._thread is not None and not self._thread.is_alive() and not self._stopped.is_set():
            return "the iLink poll thread died"
        quiet = time.monotonic() - self._heartbeat
        if quiet > silence:
            return f"no answer from iLink for {quiet:.0f} s (limit {silence:g} s)"
        return ""

    def send_text(self, to: str, text: str) -> None:
        """Send to a person who wrote to the bot, with their last context_token (any thread)."""
        if not isinstance(to, str) or not to:
            raise SendFailed("no recipient: give the contact id of a person who wrote to the bot", permanent=True)
        context = self._context(to)
        if context is None:
            raise SendFailed(f"{to} has never written to the bot: iLink lets a bot write only to people "
                             "who wrote to it within the last 24 hours", permanent=True)
        token, at = context
        age = time.time() - at
        if age > REPLY_WINDOW:
            raise SendFailed(f"the last message from {to} is {age / 3600:.0f} hours old: iLink lets a bot answer "
                             "only within about 24 hours of a person's last message; they must write to the bot "
                             "again", permanent=True)
        self._send(to, text, token)

    def stop(self) -> None:
        """Go offline: tell iLink (notifystop), keep the token for the next start."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._notify_stop()
        self._close()

    def logout(self) -> None:
        """Go offline and forget the bot token: the next login needs a scan."""
        self.stop()
        self._forget()

    # -- the poll loop (its own thread) ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._cursor = self.store.resume(self.account)
            self._loop()
        except Exception as exc:  # a defect here must be reported, not end the loop in silence
            logger.exception("the iLink poll loop failed")
            self._end(f"the iLink poll loop failed: {type(exc).__name__}: {exc}", session_ended=False)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                answer = self._poller.getupdates(self._cursor, self.poll_seconds + self.margin)
            except StopRequested:
                return
            except SessionExpired as exc:
                self._forget()
                self._end(str(exc), session_ended=True)
                return
            except BotFailure as exc:
                self._end(str(exc), session_ended=False)
                return
            if answer is None:
                continue  # no answer within the wait: silence, which the watchdog judges
            self._heartbeat = time.monotonic()
            self._learn_poll_seconds(answer.get("longpolling_timeout_ms"))
            if self._deliver(answer.get("msgs")):
                self._advance(answer.get("get_updates_buf"))

    def _learn_poll_seconds(self, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            self.poll_seconds = min(MAX_POLL_SECONDS, value / 1000)

    def _deliver(self, msgs) -> bool:
        """Hand over each message not seen before; False when a stop came first (batch unfinished)."""
        if not isinstance(msgs, list):
            if msgs is not None:
                logger.warning("iLink's getupdates answered msgs that is not a list (%s); ignored", type(msgs).__name__)
            return True
        for raw in msgs:
            with self._delivery_lock:
                if self._stopped.is_set():
                    return False
                if not is_from_bot(raw):
                    self._hand_over(raw)
        return True

    def _hand_over(self, raw) -> None:
        message = to_incoming(raw, self._reply_for)
        if self.store.seen(message.id):
            logger.info("iLink delivered message %s again; it was handed over already", message.id)
            return
        token = raw.get("context_token") if isinstance(raw, dict) else None
        token = token if isinstance(token, str) else ""
        at = sent_at(raw) if isinstance(raw, dict) else time.time()
        if message.contact_id and token:
            self._remember(message.contact_id, token, at)
        self.listener.message(message)
        self.store.delivered(message.id, message.contact_id, token, at)

    def _advance(self, cursor) -> None:
        if not isinstance(cursor, str) or not cursor:
            return
        with self._delivery_lock:
            if self._stopped.is_set():
                return  # a newer session may have moved on; this one's cursor is stale
            self._cursor = cursor
            self.store.save_cursor(self.account, cursor)

    def _end(self, reason: str, session_ended: bool) -> None:
        if self._stopped.is_set():
            return  # stopped on purpose: nothing to report
        self._stopped.set()
        self._close()
        logger.warning("iLink session ended: %s", reason)
        self.listener.logged_out(reason, session_ended=session_ended)

    # -- sending -------------------------------------------------------------------------------------
    def _context(self, contact: str) -> tuple[str, float] | None:
        with self._contexts_lock:
            known = self._contexts.get(contact)
        return known or self.store.context(contact)

    def _remember(self, contact: str, token: str, at: float) -> None:
        with self._contexts_lock:
            known = self._contexts.get(contact)
            if known is None or known[1] <= at:
                self._contexts[contact] = (token, at)

    def _reply_for(self, contact: str, token: str) -> Callable[[str], None]:
        def reply(text: str) -> None:
            if not token:
                raise SendFailed("the message came without a context_token: iLink takes no reply to it",
                                 permanent=True)
            self._send(contact, text, token)
        return reply

    def _send(self, to: str, text: str, token: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise SendFailed("the text is empty", permanent=True)
        body = {"msg": {"from_user_id": "", "to_user_id": to, "client_id": f"geekai-{uuid.uuid4().hex}",
                        "message_type": 2, "message_state": 2, "context_token": token,
                        "item_list": [{"type": 1, "text_item": {"text": text}}]}}
        with self._send_lock:
            try:
                self._sender.call("sendmessage", body)
            except IlinkRefused as exc:
                raise _refused(exc) from None
            except SessionExpired:
                raise SendFailed("the iLink session expired: the bot must log in again (a new QR) before it "
                                 "can send; the message was not sent", permanent=False) from None
            except StopRequested:
                raise SendFailed("the bot is offline: the iLink session has stopped", permanent=False) from None
            except WeChatTimeout:
                raise SendFailed("iLink did not answer in time: the message may or may not have arrived",
                                 permanent=False) from None
            except BotFailure as exc:
                raise SendFailed(f"{exc}; the message was not sent", permanent=False) from None

    # -- helpers --------------------------------------------------------------------------------------
    def _notify_stop(self) -> None:
        client = IlinkClient(self._api_url, timeout=min(NOTIFY_STOP_SECONDS, self.login_timeout),
                             cancel=threading.Event(), token=self._token)
        try:
            client.call("msg/notifystop")
        except Exception as exc:
            logger.warning("could not tell iLink the bot stops (notifystop): %s", exc)
        finally:
            client.close()

    def _close(self) -> None:
        self._poller.close()
        self._sender.close()


def _refused(exc: IlinkRefused) -> SendFailed:
    if exc.code == SEND_REFUSED:
        return SendFailed("iLink refused the message (sendmessage ret -2): the conversation's context has "
                          "expired (a bot may answer only within about 24 hours of the person's last message) "
                          "or the session is degraded; the person must write to the bot again", permanent=True)
    return SendFailed(f"{exc}; the message was not sent", permanent=False)
