"""The WSGI entry point for several worker processes: `gunicorn -w 4 -k gthread --threads 8 geekai.wsgi:app`.

Every worker builds the app (the first one brings the database schema up to date; the others
wait for it and find nothing to do) and serves the page, the API, the QR and the live stream
from the shared database. One worker at a time holds the bot's lease (geekai/bot/lease.py) and
runs the bot and the periodic jobs; if it dies, another takes over within BOT_LEASE_SECONDS and
logs in again from the session cache. The instance folder and the database come from
GEEKAI_INSTANCE_PATH and the GEEKAI_* settings, as for `python app.py`.
"""
from __future__ import annotations

import atexit
import os
import sys

from . import create_app, logs
from .bot import runtime as bot_runtime
from .server import trust_proxy

logs.configure()
app = create_app()
trust_proxy(app)  # PROXY_COUNT: the proxy's X-Forwarded-* as `python app.py` applies them


def start_bot() -> None:
    """Join the bot's lease in this worker: run the bot if it is free, else stand by."""
    from .db import db

    with app.app_context():
        db.engine.dispose(close=False)  # connections opened before a fork belong to the parent
    runtime = bot_runtime.install(app)
    runtime.take_part()
    runtime.start()
    atexit.register(runtime.shutdown, grace=app.config["BOT_STOP_GRACE_SECONDS"])


def _imported_by_gunicorns_master() -> bool:
    # With --preload, gunicorn's master (the arbiter) imports the app before it binds the socket
    # and forks the workers: threads started there would not exist in the workers, and the master
    # would run a bot of its own. Its setup() is then on the stack.
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "setup" and frame.f_code.co_filename.endswith(os.path.join("gunicorn", "arbiter.py")):
            return True
        frame = frame.f_back
    return False


if _imported_by_gunicorns_master():
    os.register_at_fork(after_in_child=start_bot)
else:
    start_bot()
