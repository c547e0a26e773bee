"""Messages in and out for the main application: every message the bot receives is stored before
the handlers run and offered as a feed and as signed callbacks; texts the application posts go
through a durable send queue. Nothing here knows which protocol (wxpy, iLink) carries them."""
from __future__ import annotations

import functools

from ..config import ConfigError


def init_app(app) -> None:
    """Tables, the recorder the supervisor runs before the handlers, the periodic jobs (the API and
    the page's card: geekai/web/messages.py, registered by geekai/web)."""
    from .. import outbox
    from ..jobs import register_job, register_message_recorder
    from . import feed, models, retention, sender  # noqa: F401 (models: the table)

    if app.config.get("MESSAGE_CALLBACK_URL") and not app.config.get(feed.SECRET_KEY_NAME):
        raise ConfigError(feed.SECRET_KEY_NAME,
                          "set (at least 8 characters) when MESSAGE_CALLBACK_URL is set: callbacks are always signed",
                          None)
    outbox.init_app(app)
    register_message_recorder(app, functools.partial(feed.record_incoming, app))
    register_job(app, sender.JOB_ID, sender.send_due, app.config["MESSAGE_SEND_INTERVAL_SECONDS"])
    register_job(app, retention.JOB_ID, retention.purge, app.config["MESSAGE_RETENTION_CHECK_SECONDS"])
