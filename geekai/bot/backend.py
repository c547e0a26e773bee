"""The small interface between the supervisor and a WeChat protocol implementation."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

# The type of a message the protocol library could not read; handlers still get its raw form.
UNREADABLE = "Unreadable"


@dataclass
class IncomingMessage:
    """A message as handlers see it, independent of the protocol library."""

    id: str
    type: str                      # wxpy's type name: "Text", "Sharing", "Picture", ...
    text: str
    sender: str                    # the sender's UserName (session-scoped id)
    sender_name: str
    # The contact id the message feed shows and BotSession.send_text accepts: stable across
    # logins (wxpy's UserName changes at each login; iLink: from_user_id). "" when unknown.
    contact_id: str = ""
    sender_contact: dict = field(default_factory=dict)   # the contact record WeChat sent
    raw: dict = field(default_factory=dict)              # the message as WeChat sent it
    reply: Callable[[str], None] | None = None


class LoginListener(Protocol):
    """What a backend reports while it logs in and while it is online."""

    def qr_ready(self, png: bytes, refresh: int, note: str = "") -> None: ...
    # refresh 0: the first QR; note: why a QR is needed when that is news (a cache set aside)
    def qr_scanned(self, push: bool = False) -> None: ...
    # The phone shows a number to type in (iLink); wrong: the code entered last did not match.
    def code_needed(self, wrong: bool) -> None: ...
    # The number an admin entered (POST /api/bot/verify), or None after `timeout` s or a stop.
    def code_entered(self, timeout: float) -> str | None: ...
    # session_ended: WeChat ended the session (a fresh QR follows); needs_person: retrying is
    # pointless (WeChat refuses this account), so wait for an admin.
    def logged_out(self, reason: str, session_ended: bool, needs_person: bool = False) -> None: ...
    def message(self, message: IncomingMessage) -> None: ...


class BotSession(Protocol):
    """A logged-in bot."""

    account: str

    def last_heartbeat(self) -> float | None: ...
    def problem(self, silence: float) -> str: ...   # "" while alive; why it is dead otherwise
    def send_text(self, to: str, text: str) -> None: ...
    # Send a text to the contact `to` (an IncomingMessage.contact_id); raises errors.SendFailed.
    def stop(self) -> None: ...      # go offline, keep the session cache for a hot login
    def logout(self) -> None: ...    # log out at WeChat and forget the cache


class Backend(Protocol):
    """Logs in; blocks until online, raising a classified failure otherwise."""

    def login(self, listener: LoginListener, cancel: threading.Event) -> BotSession: ...
    def forget(self) -> None: ...    # drop any saved session
