"""Admins' commands for the bot (log in, start, stop, log out, the phone's verification code),
from whichever process took them.

The process that runs the bot executes a command at once. Any other process (another gunicorn
worker, another host) queues it in the bot_command table; the bot's process takes queued
commands every COMMAND_POLL_SECONDS and records the outcome, which the queuing request waits for
briefly, so that the answer is the same whichever worker served it. A command nobody took within
COMMAND_MAX_AGE seconds (no process runs the bot) is dropped, not run much later by surprise.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from ..db import db, utcnow
from ..models import BotCommand

logger = logging.getLogger(__name__)

COMMANDS = ("login", "start", "stop", "logout", "verify")
COMMAND_POLL_SECONDS = 0.5
COMMAND_MAX_AGE = 60
STATE_WRITE_WAIT = 5.0


@dataclass(frozen=True)
class Outcome:
    """What a command did: the HTTP status the API answers with, and the error if it refused."""

    status: int
    error: str = ""

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "error": self.error})

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        data = json.loads(text or "{}")
        return cls(int(data.get("status", 500)), str(data.get("error", "")))


def execute(supervisor, command: str, actor: str, args: dict | None = None) -> Outcome:
    """Run a command on this process's supervisor."""
    if command in ("login", "start"):
        if not supervisor.start(actor=actor, reason=f"{command} requested by {actor}"):
            return Outcome(409, "the bot is already logged in")
    elif command == "stop":
        supervisor.stop(actor=actor, reason=f"stopped by {actor}")
    elif command == "logout":
        supervisor.logout(actor=actor)
    elif command == "verify":
        # iLink's login waits for the number the phone shows (args: {"code": "1234"}).
        if not supervisor.submit_code(str((args or {}).get("code", "")), actor=actor):
            return Outcome(409, "no verification code is asked for now")
    else:
        return Outcome(400, f"unknown command {command!r}")
    return Outcome(202)


def enqueue(command: str, actor: str, args: dict | None = None) -> int:
    """Queue a command for the bot's process (in an app context); its id."""
    row = BotCommand(command=command, actor=actor, args=json.dumps(args or {}), created_at=utcnow())
    db.session.add(row)
    db.session.commit()
    return row.id


def wait_for_outcome(command_id: int, timeout: float) -> Outcome | None:
    """The outcome once the bot's process has run the command; None if it has not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()  # a fresh snapshot each look
        row = db.session.get(BotCommand, command_id)
        if row is not None and row.result:
            return Outcome.from_json(row.result)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def run_queued(app, supervisor) -> int:
    """Take and run the commands queued by other processes, oldest first; how many ran."""
    ran = 0
    with app.app_context():
        now = utcnow()
        rows = db.session.execute(db.select(BotCommand).where(BotCommand.done_at.is_(None))
                                  .order_by(BotCommand.id)).scalars().all()
        for row in rows:
            stale = row.created_at < now - timedelta(seconds=COMMAND_MAX_AGE)
            outcome = Outcome(410, "nobody ran the bot when this command was given") if stale else None
            # Taken first (only one process may run it), then run, then its outcome recorded.
            taken = db.session.execute(update(BotCommand).where(BotCommand.id == row.id,
                                                                BotCommand.done_at.is_(None))
                                       .values(done_at=utcnow())).rowcount
            db.session.commit()
            if taken != 1:
                continue
            if outcome is None:
                try:
                    outcome = execute(supervisor, row.command, row.actor, json.loads(row.args or "{}"))
                    supervisor.store.flush(STATE_WRITE_WAIT)  # the outcome is seen with the new state
                except Exception as exc:
                    logger.exception("bot command %s failed", row.command)
                    outcome = Outcome(500, f"{type(exc).__name__}: {exc}")
                ran += 1
            db.session.execute(update(BotCommand).where(BotCommand.id == row.id)
                               .values(result=outcome.to_json(), done_at=utcnow()))
            db.session.commit()
    return ran
