"""geekai: a Flask service whose WeChat bot can never take the web down."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build the app: config, database, blueprints. Starts nothing in the background."""
    from flask import Flask  # here, so that `python -m geekai` can say in one line that Flask is missing

    instance_path = instance_path or os.environ.get("GEEKAI_INSTANCE_PATH") or os.path.join(ROOT, "instance")
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path),
        instance_relative_config=True,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)

    from . import config, db, instance_secrets, models, schema  # noqa: F401 (models: the tables)
    from . import admin_session, alerts, outbox  # noqa: F401 (their tables)
    from .cli import init_app as init_cli
    from .payments import init_app as init_payments
    from .web import init_app as init_web
    from .redaction import install_log_filter
    from .web import metrics, params

    config.load(app, test_config)
    install_log_filter()  # handlers set up by `flask run`, gunicorn or app.py: no credential in a log line
    params.init_app(app)  # before any blueprint: their routes use its id converter
    instance_secrets.ensure(app)
    init_payments(app)
    db.init_app(app)
    schema.init_app(app)
    if app.config["DB_AUTO_UPGRADE"]:
        schema.upgrade(app)
    init_web(app)
    metrics.init_app(app)
    alerts.init_app(app)
    init_cli(app)
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        from .bot.runtime import start_under_flask_run
        start_under_flask_run(app)
    return app
