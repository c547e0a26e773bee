"""Alerts that reach a person through a channel independent of WeChat.

An incident opens when the bot needs someone (see incidents.py for the exact rules); each
opening, reminder and recovery is queued in the outbox as one message per configured channel.
"""
from __future__ import annotations

from . import models  # noqa: F401 (the incident table, for create_all)


def init_app(app) -> None:
    """Register the evaluation job and the outbox's delivery job (GET /api/alerts: geekai/web/alerts.py)."""
    from .. import outbox
    from ..jobs import register_job
    from . import incidents, robot_answers

    outbox.init_app(app)
    robot_answers.register()
    register_job(app, "alerts-evaluate", incidents.evaluate, app.config["ALERT_CHECK_SECONDS"])
