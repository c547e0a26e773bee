"""WeChat Pay receipts: a ledger of accepted payments, orders matched by a code in the note, and
signed callbacks to the main application through the outbox."""
from __future__ import annotations

import functools

from ..config import ConfigError


def init_app(app) -> None:
    """Tables (before create_all), the bot's message handler and periodic jobs (the API and pages:
    geekai/web/payments.py, registered by geekai/web)."""
    from .. import outbox
    from ..jobs import register_job, register_message_handler
    from . import ledger, models, recorder  # noqa: F401 (models: tables for create_all)

    if app.config.get("PAYMENT_CALLBACK_URL") and not app.config.get("PAYMENT_CALLBACK_SECRET"):
        raise ConfigError("PAYMENT_CALLBACK_SECRET",
                          "set (at least 8 characters) when PAYMENT_CALLBACK_URL is set: callbacks are always signed",
                          None)
    outbox.init_app(app)
    register_message_handler(app, functools.partial(recorder.handle_message, app))
    register_job(app, "payments-expire-orders", ledger.expire_orders, app.config["ORDER_EXPIRY_CHECK_SECONDS"])
    register_job(app, "payments-recover-notices", recorder.recover_notices, 60)
