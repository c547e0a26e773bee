"""What other modules hand to the serving process: periodic jobs, message handlers, and the
recorder that stores each message before the handlers see it.

Modules register here from their init_app; the bot runtime of a serving process schedules the
jobs and passes the handlers to the supervisor. Nothing runs in an app that only answers tests
or CLI commands unless its runtime is started.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

JOBS = "geekai.jobs"
HANDLERS = "geekai.message_handlers"
RECORDER = "geekai.message_recorder"


@dataclass(frozen=True)
class PeriodicJob:
    id: str
    func: Callable          # called as func(app), with no app context pushed
    seconds: float


def register_job(app, job_id: str, func: Callable, seconds: float) -> None:
    """Run func(app) every `seconds` in a serving process; a second registration of the same id
    is ignored, so an init_app that runs twice (or two modules that need one job) adds it once."""
    registered = app.extensions.setdefault(JOBS, [])
    if all(job.id != job_id for job in registered):
        registered.append(PeriodicJob(job_id, func, seconds))


def register_message_handler(app, handler: Callable) -> None:
    """Call handler(IncomingMessage) for every message the bot receives, in order."""
    app.extensions.setdefault(HANDLERS, []).append(handler)


def register_message_recorder(app, recorder: Callable) -> None:
    """Call recorder(IncomingMessage) for every message the bot receives, before any handler: the
    one place where messages of every backend are stored (geekai/messages)."""
    app.extensions[RECORDER] = recorder


def jobs(app) -> list[PeriodicJob]:
    return list(app.extensions.get(JOBS, []))


def message_handlers(app) -> list[Callable]:
    return list(app.extensions.get(HANDLERS, []))


def message_recorder(app) -> Callable | None:
    return app.extensions.get(RECORDER)
