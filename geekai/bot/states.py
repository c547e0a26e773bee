"""The bot's states and the transitions allowed between them (DESIGN.md)."""
from __future__ import annotations

DISABLED = "disabled"
STOPPED = "stopped"
STARTING = "starting"
WAITING_FOR_SCAN = "waiting_for_scan"
WAITING_FOR_CONFIRM = "waiting_for_confirm"
LOGGED_IN = "logged_in"
RETRYING = "retrying"
NEEDS_LOGIN = "needs_login"
ERROR = "error"

ALL = (DISABLED, STOPPED, STARTING, WAITING_FOR_SCAN, WAITING_FOR_CONFIRM,
       LOGGED_IN, RETRYING, NEEDS_LOGIN, ERROR)

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


def is_allowed(old: str, new: str) -> bool:
    """Whether the state machine may go from old to new."""
    return new in ALLOWED.get(old, set())
