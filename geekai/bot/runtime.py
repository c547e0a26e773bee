"""Wiring the bot into a serving process: build, start after the socket is bound, stop."""
from __future__ import annotations

import logging
import os

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .. import jobs
from . import states
from .store import StateStore
from .supervisor import BotSupervisor

logger = logging.getLogger(__name__)

EXTENSION = "geekai.bot"
# How long start-up waits for the previous process's state row to be replaced.
STATE_WRITE_WAIT = 30.0


class BotRuntime:
    """The scheduler and supervisor of one serving process."""

    def __init__(self, app):
        self.app = app
        self.store = StateStore(app)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        self.supervisor = BotSupervisor(make_backend(app), self.store, self.scheduler, app.config)
        self.supervisor.handlers.extend(jobs.message_handlers(app))
        self.supervisor.recorder = jobs.message_recorder(app)
        self.enabled = app.config["BOT_ENABLED"]

    def replace_previous_state(self) -> None:
        """Before serving: the state a previous process left behind is never shown as current."""
        initial = states.STOPPED if self.enabled else states.DISABLED
        reason = f"service started (pid {os.getpid()})" if self.enabled else "BOT_ENABLED is false"
        self.store.replace_previous(initial, reason)
        self.supervisor.state = initial
        if not self.store.flush(STATE_WRITE_WAIT):
            logger.error("the database did not answer within %s s; the bot state shown may be stale "
                         "until it does", STATE_WRITE_WAIT)

    def start(self) -> None:
        """Start the scheduler; its first job starts the bot."""
        self.scheduler.start()
        for job in jobs.jobs(self.app):
            self.scheduler.add_job(job.func, "interval", seconds=job.seconds, id=job.id, args=[self.app],
                                   max_instances=1, coalesce=True)
        if self.enabled:
            self.scheduler.add_job(self.supervisor.start, id="bot-start", kwargs={"reason": "service started"})
            silence = self.app.config["WATCHDOG_SECONDS"]
            self.scheduler.add_job(self.supervisor.check_alive, "interval", seconds=max(0.2, min(5, silence / 4)),
                                   args=[silence], id="bot-watchdog", max_instances=1, coalesce=True)

    def shutdown(self, grace: float) -> bool:
        """Stop the bot and the scheduler; True when no attempt is still in flight after `grace`."""
        if self.enabled:
            self.supervisor.stop(actor="system", reason="service shutting down")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        finished = self.supervisor.join(grace)
        self.store.close(grace)
        return finished


def make_backend(app):
    """The Backend BOT_BACKEND names."""
    from .wechat import WxpyBackend

    config = app.config
    base_url = config["WECHAT_BASE_URL"]
    if config["BOT_BACKEND"] == "demo":
        from .emulator import WeChatEmulator
        emulator = WeChatEmulator(login_poll_hold=1.0, synccheck_hold=5.0, qr_lifetime=config["BOT_QR_LIFETIME"])
        emulator.start()
        app.extensions["geekai.emulator"] = emulator
        base_url = emulator.base_url
    cache = config["BOT_SESSION_CACHE"]
    return WxpyBackend(
        base_url=base_url,
        cache_path=cache if os.path.isabs(cache) else os.path.join(app.instance_path, cache),
        login_timeout=config["BOT_LOGIN_TIMEOUT"],
        qr_max_refresh=config["BOT_QR_MAX_REFRESH"],
    )


def install(app) -> BotRuntime:
    """Create this process's runtime and register it on the app."""
    runtime = BotRuntime(app)
    app.extensions[EXTENSION] = runtime
    return runtime


def get(app) -> BotRuntime | None:
    """The runtime of this process, or None when the bot runs elsewhere (CLI, tests)."""
    return app.extensions.get(EXTENSION)


def start_under_flask_run(app) -> None:
    """`flask run` has no hook after binding: start the bot here, once, in the serving process.

    With the reloader, the parent process only watches files and restarts the child; starting
    a bot there too would log in twice, so only the child (WERKZEUG_RUN_MAIN) starts one.
    """
    import atexit

    import click

    context = click.get_current_context(silent=True)
    if context is None or context.info_name != "run":
        return
    reload = context.params.get("reload")
    if reload is None:
        reload = app.debug
    if reload and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return
    runtime = install(app)
    runtime.replace_previous_state()
    runtime.start()
    atexit.register(runtime.shutdown, grace=0)
