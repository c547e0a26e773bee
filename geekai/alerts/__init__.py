"""Alerts that reach a person through a channel independent of WeChat.

An incident opens when the bot needs someone (see incidents.py for the exact rules); each
opening, reminder and recovery is queued in the outbox as one message per configured channel.
"""
from __future__ import annotations

from . import models  # noqa: F401 (the incident table, for create_all)


def init_app(app) -> None:
    """Register the evaluation job, the outbox's delivery job and GET /api/alerts."""
    from .. import outbox
    from ..jobs import register_job
    from . import incidents, views

    outbox.init_app(app)
    register_job(app, "alerts-evaluate", incidents.evaluate, app.config["ALERT_CHECK_SECONDS"])
    app.register_blueprint(views.bp)
