"""Wiring the bot into a serving process: build, start after the socket is bound, stop."""
from __future__ import annotations

import contextlib
import logging
import os

from .. import jobs, states
from ..file_modes import tighten_session_caches
from . import commands
from .lease import Lease, describe
from .state_cache import state_cache
from .store import StateStore, change_signal
from .supervisor import BotSupervisor

logger = logging.getLogger(__name__)

EXTENSION = "geekai.bot"
# The built-in emulator of demo mode (web WeChat's or iLink's), for the simulated phone.
EMULATOR = "geekai.emulator"
# How long start-up waits for the previous process's state row to be replaced.
STATE_WRITE_WAIT = 30.0
# How long an admin's command waits for its outcome (and the new state to be written).
COMMAND_WAIT = 5.0
# How often a process that does not run the bot looks for changes the one that does wrote.
FOLLOWER_WATCH_SECONDS = 1.0


class BotRuntime:
    """The scheduler, lease and supervisor of one serving process.

    Every serving process has one. The holder of the lease (lease.py) runs the bot, the periodic
    jobs and the commands other processes queue; the others watch the database for changes, so
    that their live pages update too, and take the lease over when it is free.
    """

    def __init__(self, app):
        self.app = app
        self.enabled = app.config["BOT_ENABLED"]
        self.lease = Lease(app, app.config["BOT_LEASE_SECONDS"])
        self.store = StateStore(app, guard=self.lease.guard)
        self.scheduler = None   # made by start(): APScheduler stays off the way to the first answer
        # The backend is made when this process leads: a demo's emulator starts in one process only.
        self.supervisor = BotSupervisor(None, self.store, None, app.config)
        self.supervisor.handlers.extend(jobs.message_handlers(app))
        self.supervisor.recorder = jobs.message_recorder(app)
        self.leading = False
        self._seen_change = None

    # -- start-up ----------------------------------------------------------------------------
    def take_part(self) -> None:
        """Before serving: take the lease if it is free; its holder replaces the state row the
        previous process left, so that a stale state is never shown as current."""
        acquired = self.lease.try_acquire()
        if acquired is not None:
            self._replace_previous_state(acquired, at_start=True)

    def start(self) -> None:
        """Start the scheduler: the bot and the jobs if this process leads, else a watch for the lease."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = self.supervisor.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        self.scheduler.start()
        state_cache(self.app).kept = True  # by the store's writes here, or by the watch below
        self.scheduler.add_job(self._lease_tick, "interval", seconds=self.lease.seconds / 3, id="bot-lease",
                               max_instances=1, coalesce=True)
        if self.lease.held:
            self._lead()
        else:
            self._follow()

    def command(self, command: str, actor: str, args: dict | None = None) -> commands.Outcome | None:
        """Run an admin's command here if this process runs the bot, else hand it to the one that
        does and wait briefly for its outcome (None: not taken yet)."""
        if self.leading:
            outcome = commands.execute(self.supervisor, command, actor, args)
            self.store.flush(COMMAND_WAIT)  # the answer shows the new state once it is written
            return outcome
        with self.app.app_context():
            outcome = commands.wait_for_outcome(commands.enqueue(command, actor, args), COMMAND_WAIT)
            state_cache(self.app).load()  # the answer shows what the leader wrote, not the watch's last look
            return outcome

    # -- leading and following ---------------------------------------------------------------
    def _replace_previous_state(self, acquired, at_start: bool) -> None:
        # One of states.AT_START: not a transition of the table, the previous holder's state is replaced.
        initial = states.STOPPED if self.enabled else states.DISABLED
        if at_start and acquired.ended in ("", "released"):
            actor = states.Actor.SYSTEM
            reason = f"service started (pid {os.getpid()})" if self.enabled else "BOT_ENABLED is false"
        else:  # a change of holder that no clean start explains: the history says who and why
            actor = states.Actor.LEASE
            why = {"released": "stopped", "gone": "ended without a clean stop", "expired": "expired"}
            reason = (f"{describe(self.lease.owner)} runs the bot now (lease epoch {acquired.epoch}): "
                      f"the lease of {describe(acquired.previous_owner)} {why.get(acquired.ended, 'ended')}")
        self.store.fenced = False
        self.store.replace_previous(initial, reason, actor=actor, always=actor == states.Actor.LEASE)
        self.supervisor.state = initial
        if not self.store.flush(STATE_WRITE_WAIT):
            logger.error("the database did not answer within %s s; the bot state shown may be stale "
                         "until it does", STATE_WRITE_WAIT)

    def _lead(self) -> None:
        self.leading = True
        self._remove_job("bot-watch")
        if self.supervisor.backend is None:
            self.supervisor.backend = make_backend(self.app)
        for job in jobs.jobs(self.app):
            self.scheduler.add_job(job.func, "interval", seconds=job.seconds, id=job.id, args=[self.app],
                                   max_instances=1, coalesce=True, replace_existing=True)
        self.scheduler.add_job(commands.run_queued, "interval", seconds=commands.COMMAND_POLL_SECONDS,
                               args=[self.app, self.supervisor], id="bot-commands", replace_existing=True)
        if self.enabled:
            self.scheduler.add_job(self.supervisor.start, id="bot-start", kwargs={"reason": "service started"},
                                   replace_existing=True)
            silence = self.app.config["WATCHDOG_SECONDS"]
            self.scheduler.add_job(self.supervisor.check_alive, "interval", seconds=max(0.2, min(5, silence / 4)),
                                   args=[silence], id="bot-watchdog", max_instances=1, coalesce=True,
                                   replace_existing=True)

    def _follow(self) -> None:
        self.leading = False
        self._seen_change = None  # the first look reloads the cached state
        self.scheduler.add_job(self._watch_changes, "interval", seconds=FOLLOWER_WATCH_SECONDS, id="bot-watch",
                               max_instances=1, coalesce=True, replace_existing=True)

    def _lease_tick(self) -> None:
        if self.lease.held:
            if self.lease.renew() is False:
                self._step_down()
            return
        acquired = self.lease.try_acquire()
        if acquired is not None:
            logger.info("this process runs the bot now (lease epoch %s)", acquired.epoch)
            self._replace_previous_state(acquired, at_start=False)
            self._lead()

    def _step_down(self) -> None:
        """Another process holds a newer lease: stop the bot here and write nothing more."""
        logger.warning("this process lost the bot lease to %s; its bot stops without recording anything",
                       self.lease.holder()["owner"])
        self.store.fenced = True
        for job_id in [job.id for job in jobs.jobs(self.app)] + ["bot-commands", "bot-start", "bot-watchdog"]:
            self._remove_job(job_id)
        if self.enabled:
            self.supervisor.stop(actor=states.Actor.LEASE, reason="this process lost the bot lease")
        self._follow()

    def _watch_changes(self) -> None:
        """A follower's live pages learn of the leader's writes from the database."""
        change = self.store.last_change()
        if change is not None and change != self._seen_change:
            try:
                with self.app.app_context():
                    state_cache(self.app).load()
            except Exception:
                logger.exception("could not read the bot state the leading process wrote")
                return  # looked at again at the next tick
            self._seen_change = change
            change_signal(self.app).notify()

    def _remove_job(self, job_id: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    def shutdown(self, grace: float) -> bool:
        """Stop the bot and the scheduler, give the lease up; True when no attempt is still in flight."""
        if self.enabled and self.leading:
            self.supervisor.stop(actor=states.Actor.SYSTEM, reason="service shutting down")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        finished = self.supervisor.join(grace)
        self.store.close(grace)
        if self.leading:
            self.lease.release()
            self.leading = False
        return finished


def make_backend(app):
    """The Backend BOT_BACKEND names."""
    config = app.config
    if config["BOT_BACKEND"] in ("ilink", "demo-ilink"):
        return _ilink_backend(app)
    from .wechat import WxpyBackend

    base_url = config["WECHAT_BASE_URL"]
    if config["BOT_BACKEND"] == "demo":
        from .emulator import WeChatEmulator
        base_url = _demo(app, "WeChat", WeChatEmulator(login_poll_hold=1.0, synccheck_hold=5.0,
                                                       qr_lifetime=config["BOT_QR_LIFETIME"]))
    cache_path = _instance_file(app, config["BOT_SESSION_CACHE"])
    tighten_session_caches(cache_path)
    return WxpyBackend(
        base_url=base_url,
        cache_path=cache_path,
        login_timeout=config["BOT_LOGIN_TIMEOUT"],
        qr_max_refresh=config["BOT_QR_MAX_REFRESH"],
    )


def _ilink_backend(app):
    from .ilink import IlinkBackend
    from .ilink_store import IlinkStateStore

    config = app.config
    base_url = config["ILINK_BASE_URL"]
    if config["BOT_BACKEND"] == "demo-ilink":
        from .ilink_emulator import IlinkEmulator
        base_url = _demo(app, "iLink", IlinkEmulator(qr_poll_hold=1.0, updates_hold=5.0, qr_lifetime=config["BOT_QR_LIFETIME"]))
    return IlinkBackend(
        base_url=base_url,
        token_path=_instance_file(app, config["ILINK_TOKEN_FILE"]),
        store=IlinkStateStore(app),
        login_timeout=config["BOT_LOGIN_TIMEOUT"],
        qr_max_refresh=config["BOT_QR_MAX_REFRESH"],
        # A code nobody enters holds the login no longer than a QR nobody scans.
        code_wait=config["BOT_QR_LIFETIME"],
        poll_seconds=config["ILINK_POLL_SECONDS"],
    )


def _demo(app, name: str, emulator) -> str:
    """Start demo mode's emulator in this process, for the bot and the simulated phone; its URL."""
    emulator.start()
    app.extensions[EMULATOR] = emulator
    logger.info("demo mode: the %s emulator serves on %s (the page's simulated phone acts on it in-process; "
                "it has no control endpoints)", name, emulator.base_url)
    return emulator.base_url


def _instance_file(app, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(app.instance_path, name)


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
    runtime.take_part()
    runtime.start()
    atexit.register(runtime.shutdown, grace=0)
