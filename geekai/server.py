"""Serving: bind the socket with waitress, then start the bot; stop both on SIGTERM/SIGINT."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from .bot import runtime as bot_runtime

logger = logging.getLogger(__name__)


def _raise_exit(signum, _frame):
    # waitress's run() catches SystemExit and closes its sockets; the bot is stopped after it.
    # Later signals are ignored: the shutdown below is bounded by BOT_STOP_GRACE_SECONDS.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(0)


def serve(app, host: str, port: int, threads: int = 8) -> int:
    """Serve until a signal; return the exit status."""
    from waitress.server import create_server

    runtime = bot_runtime.install(app)
    runtime.replace_previous_state()
    server = create_server(app, host=host, port=port, threads=threads, ident="geekai")
    logger.info("geekai listening on http://%s:%s", *server.getsockname()[:2])
    print(f"geekai: serving on http://{server.getsockname()[0]}:{server.getsockname()[1]}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    # The socket is bound: start the bot beside the server, never before it.
    threading.Thread(target=runtime.start, name="geekai-bot-start", daemon=True).start()
    try:
        server.run()
    finally:
        finished = runtime.shutdown(grace=app.config["BOT_STOP_GRACE_SECONDS"])
        logger.info("geekai stopped%s", "" if finished else " (a WeChat request was still in flight)")
        logging.shutdown()
    if not finished:
        # The attempt thread is a daemon blocked in a socket read; the state is already
        # recorded as stopped, so nothing is lost by not waiting for it.
        os._exit(0)
    return 0
