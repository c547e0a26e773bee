"""The bot's states and the transitions allowed between them (docs/architecture.md has the table).

The table is true: every transition the supervisor makes is in it (the supervisor logs an ERROR
"unexpected bot transition" otherwise, and the tests fail on that line). A process that starts
running the bot replaces whatever state the previous one left with STOPPED or DISABLED
(`AT_START`): not a transition the bot made, so it is apart.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The bot's states; each is its own string, as stored and as the API shows it."""

    DISABLED = "disabled"
    STOPPED = "stopped"
    STARTING = "starting"
    WAITING_FOR_SCAN = "waiting_for_scan"
    WAITING_FOR_CONFIRM = "waiting_for_confirm"
    LOGGED_IN = "logged_in"
    RETRYING = "retrying"
    NEEDS_LOGIN = "needs_login"
    ERROR = "error"


class Actor(StrEnum):
    """Who made a transition: the history's "by" column."""

    BOT = "bot"                  # the bot on its own (a login step, a failure, a recovery)
    WATCHDOG = "watchdog"        # the watchdog restarted a silent or dead session
    SYSTEM = "system"            # the service itself (start, shutdown)
    LEASE = "lease"              # another process took over the bot (geekai/bot/lease.py)
    ADMIN_WEB = "admin (web)"    # an admin on the status page
    API_TOKEN = "api token"      # a script with the bearer token
    ADMIN = "admin"              # an admin, by older releases' rows


ADMINS = (Actor.ADMIN_WEB, Actor.API_TOKEN, Actor.ADMIN)


def by_admin(actor: str) -> bool:
    """Whether a person (an admin on the page or a script with the token) made the transition."""
    return actor in ADMINS or actor.startswith("admin")


DISABLED, STOPPED, STARTING = State.DISABLED, State.STOPPED, State.STARTING
WAITING_FOR_SCAN, WAITING_FOR_CONFIRM, LOGGED_IN = State.WAITING_FOR_SCAN, State.WAITING_FOR_CONFIRM, State.LOGGED_IN
RETRYING, NEEDS_LOGIN, ERROR = State.RETRYING, State.NEEDS_LOGIN, State.ERROR

ALL = tuple(State)

# Where each state may go. Every state may go to STOPPED (admin stop, shutdown) and to
# ERROR (a permanent failure can surface anywhere); those are added below.
_NEXT = {
    DISABLED: set(),
    STOPPED: {STARTING},
    # starting -> starting: a session rejected at once asks for a fresh attempt at once.
    STARTING: {STARTING, WAITING_FOR_SCAN, WAITING_FOR_CONFIRM, LOGGED_IN, RETRYING, NEEDS_LOGIN},
    WAITING_FOR_SCAN: {WAITING_FOR_SCAN, WAITING_FOR_CONFIRM, LOGGED_IN, RETRYING, NEEDS_LOGIN, STARTING},
    # waiting_for_confirm -> itself: iLink asks for the phone's code, an admin enters it, it was wrong.
    WAITING_FOR_CONFIRM: {WAITING_FOR_SCAN, WAITING_FOR_CONFIRM, LOGGED_IN, RETRYING, NEEDS_LOGIN, STARTING},
    LOGGED_IN: {STARTING, RETRYING, NEEDS_LOGIN},
    RETRYING: {STARTING},
    NEEDS_LOGIN: {STARTING},
    ERROR: {STARTING},
}
ALLOWED = {state: targets | ({STOPPED, ERROR} if state != DISABLED else set())
           for state, targets in _NEXT.items()}


# What a starting process writes over the previous one's state (geekai/bot/store.py replace_previous).
AT_START = (STOPPED, DISABLED)


def is_allowed(old: str, new: str) -> bool:
    """Whether the state machine may go from old to new."""
    return new in ALLOWED.get(old, set())
