"""The web surface: health probes, the JSON API, the status page and admin login."""
from __future__ import annotations

from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()


def init_app(app) -> None:
    """Register the blueprints and CSRF protection."""
    from .. import display_time
    from . import alerts, api, auth, deliveries, demo, headers, health, https, i18n, pages, payments, reasons, stats, stream

    csrf.init_app(app)
    app.add_template_filter(display_time.shown, "shown")  # every time on a page: China time (UTC+8)
    headers.init_app(app)
    i18n.init_app(app)
    reasons.init_app(app)
    https.init_app(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(deliveries.bp)
    payments.init_app(app)
