"""The bot supervisor: one state machine that logs in, classifies failures, retries and stops.

Attempts run in their own daemon thread, started by an APScheduler job (now, or at the time a
backoff chose), so a blocked login never holds the web or the scheduler. Each attempt has a
generation number: whatever an older attempt reports after it was superseded is ignored.

A login alone does not clear the failure count: a session that never once synced with WeChat
(a hot login whose sync keeps failing, a token that dies at once) fails again with a longer
pause each time. Only a sync after the login proves the session healthy.
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import traceback
from datetime import datetime, timedelta, timezone

from .. import backoff, states
from . import errors
from .backend import Backend, IncomingMessage
from .dedupe import RecentIds
from ..db import utcnow

logger = logging.getLogger(__name__)
backoff_delay = backoff.delay  # the messages' sends use the same rule (geekai/backoff.py)


class BotSupervisor:
    """Drives a Backend through the states of states.py and records every transition."""

    def __init__(self, backend: Backend, store, scheduler, config: dict, rng=random.random):
        self.backend = backend
        self.store = store
        self.scheduler = scheduler
        self.retry_first = config["BOT_RETRY_FIRST_SECONDS"]
        self.retry_max = config["BOT_RETRY_MAX_SECONDS"]
        self.qr_lifetime = config["BOT_QR_LIFETIME"]
        self.rng = rng
        self.state = states.STOPPED
        self.session = None
        self.failures = 0
        self.generation = 0
        self.handlers: list = []
        # Stores each message before the handlers run (geekai/messages); None: nothing stores.
        self.recorder = None
        self.stats = {"messages_in": 0, "messages_out": 0, "messages_failed": 0, "watchdog_restarts": 0}
        self._seen = RecentIds()  # a message a restored session gets again is not handed over twice
        self._cancel = threading.Event()
        self._codes = CodeBox()
        self._online_heartbeat: float | None = None   # the session's heartbeat when it logged in
        self._pending_logout: tuple[str, str] | None = None
        self._closing = threading.Event()   # set once the previous session has finished stopping
        self._closing.set()
        self.stop_grace = config["BOT_STOP_GRACE_SECONDS"]
        self._job_id = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    # -- commands (any thread) ------------------------------------------------------------
    def start(self, actor: str = "system", reason: str = "bot started") -> bool:
        """Log in now (also "retry now" and "get a new QR"); False when already logged in."""
        with self._lock:
            if self.state == states.LOGGED_IN:
                return False
            self._end_current()
            self.failures = 0
            self._go(states.STARTING, reason, actor=actor)
            self._schedule(0)
            return True

    def stop(self, actor: str = "system", reason: str = "stopped by admin") -> None:
        """Go offline, keep the session cache, and wait for an admin's start."""
        with self._lock:
            self._end_current()
            if self.state != states.STOPPED:
                self._go(states.STOPPED, reason, actor=actor)

    def logout(self, actor: str = "admin") -> None:
        """Log out at WeChat, forget the session, and wait for an admin's login."""
        with self._lock:
            session, self.session = self.session, None
            self._end_current()
            if session is not None:
                session.logout()
            self.backend.forget()
            self._go(states.NEEDS_LOGIN, "logged out by admin", actor=actor)

    def send_text(self, to: str, text: str) -> None:
        """Send a text through the online session, from any thread; raises errors.SendFailed
        (errors.NotOnline while no session is logged in)."""
        session = self.session
        if session is None:
            raise errors.NotOnline()
        try:
            session.send_text(to, text)
        except errors.NotOnline:
            raise
        except errors.SendFailed:
            self.stats["messages_failed"] += 1
            raise
        self.stats["messages_out"] += 1

    def submit_code(self, code: str, actor: str = "admin") -> bool:
        """Pass the number shown on the phone to the login waiting for it; False when none waits."""
        with self._lock:
            if self.state != states.WAITING_FOR_CONFIRM or not self._codes.put(code):
                return False
            self._go(states.WAITING_FOR_CONFIRM, f"verification code entered by {actor}; checking it",
                     actor=actor, verify_code="checking")
            return True

    def last_heartbeat(self) -> float | None:
        """time.monotonic() of the last good sync with WeChat, or None when not online."""
        session = self.session
        return session.last_heartbeat() if session is not None else None

    def check_alive(self, silence: float) -> str:
        """Watchdog: restart a bot that claims logged_in but stopped syncing; return what was found."""
        with self._lock:
            session = self.session
            if self.state != states.LOGGED_IN or session is None:
                return ""
            problem = session.problem(silence)
            if not problem:
                return ""
            self.session = None
            self._settle(session)
            self.stats["watchdog_restarts"] += 1
            # Stopped outside the lock (it may wait on WeChat); the next attempt waits for it, so
            # that it finds the session cache saved, not half written.
            self._closing = threading.Event()
            self._after_failure(errors.TRANSIENT, f"watchdog: {problem}", actor=states.Actor.WATCHDOG)
        try:
            session.stop()
        finally:
            self._closing.set()
        return problem

    def join(self, timeout: float) -> bool:
        """Wait for the attempt thread to end; True if none is left running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # -- the attempt (its own thread) -------------------------------------------------------
    def _schedule(self, delay: float) -> None:
        self._job_id = f"bot-attempt-{self.generation}"
        run_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
        self.scheduler.add_job(self._spawn, "date", run_date=run_at, args=[self.generation],
                               id=self._job_id, replace_existing=True, misfire_grace_time=None)

    def _spawn(self, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if self.state != states.STARTING:
                self._go(states.STARTING, "connecting to WeChat", attempt=self.failures)
            self._cancel = threading.Event()
            self._codes = CodeBox()
            self._pending_logout = None
            self._thread = threading.Thread(target=self._attempt, args=(generation, self._cancel),
                                            name=f"geekai-bot-{generation}", daemon=True)
            self._thread.start()

    def _attempt(self, generation: int, cancel: threading.Event) -> None:
        listener = _Listener(self, generation)
        self._closing.wait(self.stop_grace)
        try:
            session = self.backend.login(listener, cancel)
        except BaseException as exc:  # SystemExit included: wxpy exits on network errors
            self._failed(generation, exc)
            return
        with self._lock:
            if generation != self.generation:
                session.stop()
                return
            self.session, self._online_heartbeat = session, session.last_heartbeat()
            # attempt 0 on the page; the count itself stays until a sync proves the session (_settle).
            self._go(states.LOGGED_IN, f"logged in as {session.account}", account=session.account, attempt=0)
            if self._pending_logout is not None:
                # The session ended before the login was recorded (WeChat kicked it at once).
                kind, reason = self._pending_logout
                self.session = None
                self._after_failure(kind, reason)

    def _settle(self, session) -> None:
        """A session that synced after its login was healthy: its failure starts a new count."""
        beat = session.last_heartbeat() if session is not None else None
        if beat is not None and self._online_heartbeat is not None and beat > self._online_heartbeat:
            self.failures = 0

    def _failed(self, generation: int, exc: BaseException) -> None:
        kind, reason = errors.classify(exc)
        detail = _describe(exc) if kind != errors.STOPPED else ""
        with self._lock:
            if generation != self.generation or kind == errors.STOPPED:
                return
            self._after_failure(kind, reason, detail)

    def _after_failure(self, kind: str, reason: str, detail: str = "", actor: str = "bot") -> None:
        logger.warning("bot attempt failed (%s): %s", kind, reason)
        if kind == errors.NEEDS_PERSON:
            self._go(states.NEEDS_LOGIN, reason, detail=detail, actor=actor)
        elif kind == errors.PERMANENT:
            self._go(states.ERROR, reason, detail=detail, actor=actor)
        elif kind == errors.SESSION_LOST and self.failures == 0:
            # A logout or a rejected session asks for a fresh QR at once, but only once in a row.
            self.failures += 1
            self.generation += 1
            self._go(states.STARTING, reason, detail=detail, actor=actor)
            self._schedule(0)
        else:
            self.failures += 1
            self.generation += 1
            delay = backoff_delay(self.failures, self.retry_first, self.retry_max, self.rng)
            self._go(states.RETRYING, reason, detail=detail, actor=actor, attempt=self.failures,
                     next_retry_at=utcnow() + timedelta(seconds=delay))
            self._schedule(delay)

    # -- reports from the backend (attempt and receiving threads) -------------------------
    def _qr_ready(self, generation: int, png: bytes, refresh: int, note: str = "") -> None:
        with self._lock:
            if generation == self.generation:
                reason = "scan the QR with WeChat" if refresh == 0 else f"QR expired; new QR (refresh {refresh})"
                if note:
                    reason += f" ({note})"
                self._go(states.WAITING_FOR_SCAN, reason, qr_png=png,
                         qr_expires_at=utcnow() + timedelta(seconds=self.qr_lifetime))

    def _qr_scanned(self, generation: int, push: bool) -> None:
        with self._lock:
            if generation == self.generation:
                reason = "confirm the login on your phone" + (" (login request sent to the phone)" if push else "")
                self._go(states.WAITING_FOR_CONFIRM, reason)

    def _code_needed(self, generation: int, wrong: bool) -> None:
        with self._lock:
            if generation == self.generation:
                self._codes.open()
                reason = ("the code did not match: enter the number shown on the phone again" if wrong
                          else "enter the number shown on the phone")
                self._go(states.WAITING_FOR_CONFIRM, reason, verify_code="wrong" if wrong else "required")

    def _code_entered(self, generation: int, timeout: float) -> str | None:
        with self._lock:
            box = self._codes if generation == self.generation else None
        return box.take(timeout) if box is not None else None

    def _logged_out(self, generation: int, reason: str, session_ended: bool, needs_person: bool) -> None:
        kind = errors.NEEDS_PERSON if needs_person else errors.SESSION_LOST if session_ended else errors.TRANSIENT
        with self._lock:
            if generation != self.generation:
                return
            if self.state != states.LOGGED_IN:
                if self.session is None and self.state in (states.STARTING, states.WAITING_FOR_SCAN,
                                                           states.WAITING_FOR_CONFIRM):
                    self._pending_logout = (kind, reason)  # the attempt is returning this session
                return
            session, self.session = self.session, None
            self._settle(session)
            self._after_failure(kind, reason)

    def _message(self, generation: int, message: IncomingMessage) -> None:
        if not self._seen.first_time(message.id):
            logger.info("message %s came again; handed over once already", message.id)
            return
        self.stats["messages_in"] += 1
        if self.recorder is not None:
            try:
                self.recorder(message)
            except Exception:
                logger.exception("message %s could not be stored; the handlers get it all the same", message.id)
        if message.reply is not None:
            message.reply = self._counted(message.reply)
        for handler in list(self.handlers):
            try:
                handler(message)
            except Exception:
                logger.exception("message handler %r failed on message %s", handler, message.id)

    def _counted(self, send):
        def reply(text):
            try:
                result = send(text)
            except errors.SendFailed as exc:
                self.stats["messages_failed"] += 1
                logger.warning("a reply was not sent: %s", exc)
                raise
            self.stats["messages_out"] += 1
            return result
        return reply

    # -- helpers ---------------------------------------------------------------------------
    def _end_current(self) -> None:
        """Cancel the running attempt and any scheduled one; take the session offline."""
        self.generation += 1
        self._cancel.set()
        self._codes.close()
        if self.scheduler is not None:   # None before the runtime starts it: nothing scheduled yet
            from apscheduler.jobstores.base import JobLookupError

            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(self._job_id)
        session, self.session = self.session, None
        if session is not None:
            session.stop()

    def _go(self, new: str, reason: str, *, actor: str = "bot", **fields) -> None:
        old = self.state
        if not states.is_allowed(old, new):
            logger.error("unexpected bot transition %s -> %s (%s)", old, new, reason)
        self.state = new
        fields.setdefault("attempt", self.failures)
        logger.info("bot %s -> %s: %s", old, new, reason)
        self.store.transition(old, new, reason, actor=actor, **fields)


def _describe(exc: BaseException) -> str:
    """The failure's traceback for the admin, with the exceptions that caused it in one line each."""
    lines = traceback.format_exception(exc, chain=False)
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:  # a chain can loop back on itself
        seen.add(id(cause))
        lines.append(f"caused by {type(cause).__name__}: {cause}\n")
        cause = cause.__cause__ or cause.__context__
    return "".join(lines)


class CodeBox:
    """The verification code of one attempt: from the admin who types it to the login that waits."""

    def __init__(self):
        self._cond = threading.Condition()
        self._code: str | None = None
        self._open = False
        self._closed = False

    def open(self) -> None:
        """A code is asked for now: the next put() is taken."""
        with self._cond:
            self._open, self._code = True, None

    def put(self, code: str) -> bool:
        with self._cond:
            if not self._open or self._closed:
                return False
            self._open, self._code = False, code
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> str | None:
        """The code put since open(), waiting up to `timeout`; None after it or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._code is not None or self._closed, timeout)
            code, self._code, self._open = self._code, None, False
            return None if self._closed else code

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Listener:
    """The LoginListener of one attempt, tagged with its generation."""

    def __init__(self, supervisor: BotSupervisor, generation: int):
        self.supervisor = supervisor
        self.generation = generation

    def qr_ready(self, png: bytes, refresh: int, note: str = "") -> None:
        self.supervisor._qr_ready(self.generation, png, refresh, note)

    def qr_scanned(self, push: bool = False) -> None:
        self.supervisor._qr_scanned(self.generation, push)

    def code_needed(self, wrong: bool) -> None:
        self.supervisor._code_needed(self.generation, wrong)

    def code_entered(self, timeout: float) -> str | None:
        return self.supervisor._code_entered(self.generation, timeout)

    def logged_out(self, reason: str, session_ended: bool, needs_person: bool = False) -> None:
        self.supervisor._logged_out(self.generation, reason, session_ended, needs_person)

    def message(self, message: IncomingMessage) -> None:
        self.supervisor._message(self.generation, message)
