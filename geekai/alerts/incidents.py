"""Opening, reminding and closing incidents from the bot's state row and event history.

The evaluation reads only the database, so it works the same in any process and after a
restart; each notice is queued in the outbox in the same transaction that records it, so a
notice exists exactly when the incident change does, and the outbox delivers it later if the
receiver is down.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .. import states
from ..bot.store import change_signal
from ..db import db, utcnow
from ..models import STATE_ROW_ID, WATCHDOG_RESTART, BotEvent, BotState
from . import channels
from .models import DOWN, ERROR, FLAPPING, NEEDS_LOGIN, Incident

logger = logging.getLogger(__name__)

WATCHING_SINCE = "geekai.alerts.watching_since"
FLAP_RESTARTS = 3
FLAP_WINDOW = timedelta(hours=1)
# States an admin puts the bot in on purpose (stop, logout); no incident while they hold.
ADMIN_OFFLINE = (states.STOPPED, states.NEEDS_LOGIN)


by_admin = states.by_admin  # a person's deliberate command (page or API token)


def evaluate(app) -> str:
    """Periodic job: open, remind or close the incident; return what was done ("" for nothing)."""
    with app.app_context():
        since = app.extensions.setdefault(WATCHING_SINCE, utcnow())
        try:
            done = _evaluate(app.config, since)
        except Exception:
            db.session.rollback()
            raise
    if done:
        change_signal(app).notify()  # the live page's alert card shows incidents
    return done


def open_incident() -> Incident | None:
    """The open incident (at most one is open), or None."""
    return db.session.execute(db.select(Incident).where(Incident.closed_at.is_(None))
                              .order_by(Incident.id.desc()).limit(1)).scalar_one_or_none()


def _evaluate(config, watching_since: datetime) -> str:
    now = utcnow()
    row = db.session.get(BotState, STATE_ROW_ID)
    if row is None:
        return ""
    latest = db.session.execute(db.select(BotEvent).order_by(BotEvent.id.desc()).limit(1)).scalar_one_or_none()
    incident = open_incident()
    if incident is not None:
        done = _follow(incident, row, latest, config, now)
    else:
        done = _maybe_open(row, latest, config, now, watching_since)
    db.session.commit()
    return done


# -- opening ---------------------------------------------------------------------------------
def _maybe_open(row: BotState, latest: BotEvent | None, config, now: datetime, watching_since: datetime) -> str:
    cause = _cause(row, latest, config, now, watching_since)
    if cause is None:
        return ""
    kind, began_at, reason = cause
    incident = Incident(kind=kind, opened_at=now, began_at=began_at, state=row.state, reason=reason,
                        last_notice_at=now, reminders=0)
    db.session.add(incident)
    db.session.flush()
    logger.warning("incident %s opened (%s): %s", incident.id, kind, reason)
    _notify(incident, channels.OPENED, config)
    return f"opened {kind}"


def _cause(row: BotState, latest: BotEvent | None, config, now: datetime, watching_since: datetime):
    """(kind, began_at, reason) when the history shows an incident, else None."""
    if row.state == states.DISABLED:
        return None
    restarts = _watchdog_restarts(now)
    if len(restarts) >= FLAP_RESTARTS:
        return FLAPPING, restarts[0].at, (f"{len(restarts)} watchdog restarts within an hour; "
                                          f"last: {restarts[-1].reason}")
    if row.state == states.LOGGED_IN or _admin_offline(row, latest):
        return None
    if row.state in (states.NEEDS_LOGIN, states.ERROR) and latest is not None and latest.to_state == row.state:
        return (NEEDS_LOGIN if row.state == states.NEEDS_LOGIN else ERROR), latest.at, row.reason
    departure, reset = _outage_start()
    if departure is None:
        return None
    # The clock starts when the bot left; an admin's (or the service's) start or stop since then
    # starts it again, and so does a restart of the service: the old process could not watch.
    start = reset if reset is not None and reset.at > departure.at else departure
    if (now - max(start.at, watching_since)).total_seconds() < config["ALERT_GRACE_SECONDS"]:
        return None
    reason = start.reason if start.reason == row.reason else f"{start.reason}; now: {row.reason}"
    return DOWN, start.at, reason


def _admin_offline(row: BotState, latest: BotEvent | None) -> bool:
    return (latest is not None and by_admin(latest.actor) and latest.to_state == row.state
            and row.state in ADMIN_OFFLINE)


def _by_admin_or_system():
    """SQL: an event a person or the service itself caused (start, stop, logout, a restart)."""
    return db.or_(BotEvent.actor.in_((states.Actor.API_TOKEN, states.Actor.SYSTEM)),
                  BotEvent.actor.startswith("admin"))


def _outage_start() -> tuple[BotEvent | None, BotEvent | None]:
    """(the event that took the bot out of logged_in, the latest admin or system event since it
    last arrived in logged_in); the departure is None if the bot never was logged in."""
    arrived = db.session.execute(db.select(db.func.max(BotEvent.id))
                                 .where(BotEvent.to_state == states.LOGGED_IN)).scalar()
    since = BotEvent.id > arrived if arrived is not None else db.true()
    departure = db.session.execute(
        db.select(BotEvent).where(since, BotEvent.from_state == states.LOGGED_IN,
                                  BotEvent.to_state != states.LOGGED_IN)
        .order_by(BotEvent.id).limit(1)).scalar_one_or_none()
    reset = db.session.execute(db.select(BotEvent).where(since, _by_admin_or_system())
                               .order_by(BotEvent.id.desc()).limit(1)).scalar_one_or_none()
    return departure, reset


def _watchdog_restarts(now: datetime) -> list[BotEvent]:
    """Watchdog restarts in the last hour that no earlier incident has already covered."""
    start = now - FLAP_WINDOW
    closed = db.session.execute(db.select(db.func.max(Incident.closed_at))).scalar()
    if closed is not None and closed > start:
        start = closed
    events = db.session.execute(
        db.select(BotEvent).where(BotEvent.at > start, WATCHDOG_RESTART).order_by(BotEvent.id)).scalars().all()
    return list(events)


# -- an open incident --------------------------------------------------------------------------
def _follow(incident: Incident, row: BotState, latest: BotEvent | None, config, now: datetime) -> str:
    if row.state == states.LOGGED_IN and _steady(incident, config, now):
        return _close(incident, row, now, f"logged in again as {row.account}" if row.account else "logged in again",
                      config)
    if row.state == states.DISABLED:
        return _close(incident, row, now, "the bot was disabled", config)
    if _admin_offline(row, latest):
        return _close(incident, row, now, f"taken offline by {latest.actor}: {latest.reason}", config)
    if row.state != states.LOGGED_IN and (incident.state, incident.reason) != (row.state, row.reason):
        incident.state, incident.reason = row.state, row.reason
    remind = config["ALERT_REMIND_SECONDS"]
    if remind and (now - incident.last_notice_at).total_seconds() >= remind:
        incident.reminders += 1
        incident.last_notice_at = now
        _notify(incident, channels.REMINDER, config, suffix=str(incident.reminders))
        return "reminded"
    return ""


def _steady(incident: Incident, config, now: datetime) -> bool:
    """Logged in counts as recovered at once, except after flapping: then only once it held."""
    if incident.kind != FLAPPING:
        return True
    last = db.session.execute(
        db.select(db.func.max(BotEvent.at)).where(WATCHDOG_RESTART)).scalar()
    return last is None or (now - last).total_seconds() >= max(config["ALERT_GRACE_SECONDS"], 1)


def _close(incident: Incident, row: BotState, now: datetime, reason: str, config) -> str:
    incident.closed_at, incident.close_reason, incident.state = now, reason, row.state
    logger.info("incident %s closed: %s", incident.id, reason)
    _notify(incident, channels.RESOLVED, config)
    return "closed"


def _notify(incident: Incident, notice: str, config, suffix: str = "") -> None:
    """Queue one message per channel; the key makes a repeat of the same notice a no-op."""
    from .. import outbox

    for message in channels.build(incident, notice, config):
        key = f"incident-{incident.id}-{notice}{suffix}-{message.channel}"
        outbox.enqueue(message.topic, message.transport, message.target, message.payload,
                       key=key, headers=message.headers)
