"""Where the time to the first /readyz goes, phase by phase, in one fresh process (a driver).

Run by bench/first_answer.py in a new interpreter per sample, on an instance folder that already
holds a database (a restart): `python bench/startup_phases.py INSTANCE` prints one JSON object,
milliseconds per phase, in the order the service goes through them (geekai/server.py builds the
app the same way: create_app, then the runtime takes part; no bot, no socket).
"""
from __future__ import annotations

import json
import os
import sys
import time

BEGAN = time.perf_counter()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(instance: str) -> None:
    sys.path.insert(0, ROOT)
    os.environ.update(GEEKAI_BOT_ENABLED="false", GEEKAI_ADMIN_PASSWORD="bench-password")
    phases, last = {}, BEGAN

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = (now - last) * 1000
        last = now

    import flask  # noqa: F401
    import waitress.server  # noqa: F401
    mark("Flask and waitress (what a bare Flask app imports)")
    import flask_sqlalchemy  # noqa: F401
    import sqlalchemy.orm  # noqa: F401
    mark("SQLAlchemy and Flask-SQLAlchemy")
    import flask_wtf  # noqa: F401
    import prometheus_client  # noqa: F401
    mark("Flask-WTF and prometheus_client")
    from geekai import admin_session, alerts, create_app, messages, models, outbox, payments, web  # noqa: F401
    from geekai.bot import runtime
    mark("geekai's own modules (models, blueprints, the bot's runtime)")
    app = create_app(instance_path=instance)
    mark("create_app: config, engine, migrations checked, routes")
    runtime.install(app).take_part()
    mark("lease taken, the previous state row replaced")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    mark("the first /readyz (first query: the ORM maps its models)")
    print(json.dumps(phases))


if __name__ == "__main__":
    main(sys.argv[1])
