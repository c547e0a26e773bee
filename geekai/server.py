"""Serving: bind the socket with waitress first, build the app and start the bot beside it.

The socket is bound and /healthz answers before the app is built (SQLAlchemy, the models, the
bot runtime), so the first answer costs what a bare Flask app costs. Every other request waits
until the app is ready, by which time the previous process's state row has been replaced.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading

from .security_headers import HEADERS as SECURITY_HEADERS

logger = logging.getLogger(__name__)

WARM_UP_WAIT = 30.0
_HEALTHY = b'{"status":"ok"}\n'
# The X-Forwarded-* headers waitress takes from a trusted proxy (and drops from anyone else).
PROXY_HEADERS = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"}


class WarmingApp:
    """A WSGI app that answers /healthz at once and everything else once the real app is built."""

    def __init__(self, threads: int = 16):
        self.threads = threads
        self.app = None
        self.runtime = None
        self.failed: BaseException | None = None
        self.ready = threading.Event()

    def __call__(self, environ, start_response):
        if self.app is None and environ.get("PATH_INFO") == "/healthz" and not self.failed:
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_HEALTHY))),
                                      *SECURITY_HEADERS])
            return [_HEALTHY]
        if not self.ready.wait(WARM_UP_WAIT) or self.app is None:
            body = b'{"error":"the service is starting or failed to start"}\n'
            start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "5"),
                                                       *SECURITY_HEADERS])
            return [body]
        return self.app(environ, start_response)

    def build(self, create) -> None:
        """Build the app, replace the stale state, then start the bot (in this thread)."""
        from .bot import runtime as bot_runtime

        try:
            app = create()
            fit_streams(app, self.threads)
            runtime = bot_runtime.install(app)
            runtime.take_part()
        except BaseException as exc:  # a broken database or instance folder ends the service
            self.failed = exc
            self.ready.set()
            print(f"geekai: cannot start: {exc}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.app, self.runtime = app, runtime
        self.ready.set()
        runtime.start()


def fit_streams(app, threads: int) -> None:
    """Live pages hold a server thread each: keep some threads for everything else, /healthz first."""
    most = max(0, threads - 4)
    if app.config["STREAM_MAX_CLIENTS"] > most:
        logger.warning("STREAM_MAX_CLIENTS %s would leave the server's %s threads no room for other "
                       "requests; using %s", app.config["STREAM_MAX_CLIENTS"], threads, most)
        app.config["STREAM_MAX_CLIENTS"] = most


def _raise_exit(signum, _frame):
    # waitress's run() catches SystemExit and closes its sockets; the bot is stopped after it.
    # Later signals are ignored: the shutdown below is bounded by BOT_STOP_GRACE_SECONDS.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(0)


def _stop_serving(warming: WarmingApp, signum, frame):
    # An open live page's event stream holds a thread, and waitress waits 5 s for its threads.
    if warming.app is not None:
        from .web.stream import end_streams
        end_streams(warming.app)
    _raise_exit(signum, frame)


def waitress_options(config) -> dict:
    """What waitress takes from the config: the trusted proxy and the body limit.

    The proxy's X-Forwarded-For/-Proto/-Host/-Port are applied by waitress itself (it drops
    them from any other peer), so the app sees the client's address and scheme. A body larger
    than MAX_CONTENT_LENGTH is answered 413 as soon as its Content-Length is read (or, chunked,
    as soon as it passes the limit), before the app or a buffer sees it.
    """
    # waitress refuses a body of max_request_body_size bytes or more; Flask one of more than
    # MAX_CONTENT_LENGTH: the same limit.
    options = {"max_request_body_size": config["MAX_CONTENT_LENGTH"] + 1}
    if config["PROXY_COUNT"]:
        options.update(trusted_proxy=config["PROXY_ADDRESS"], trusted_proxy_count=config["PROXY_COUNT"],
                       trusted_proxy_headers=set(PROXY_HEADERS))
    return options


def trust_proxy(app) -> None:
    """Under another server (gunicorn, through geekai.wsgi): the same translation of a trusted
    proxy's X-Forwarded-* headers, waitress's own code as WSGI middleware around the app."""
    options = waitress_options(app.config)
    if "trusted_proxy" not in options:
        return
    from waitress.proxy_headers import proxy_headers_middleware

    app.wsgi_app = proxy_headers_middleware(app.wsgi_app, trusted_proxy=options["trusted_proxy"],
                                            trusted_proxy_count=options["trusted_proxy_count"],
                                            trusted_proxy_headers=options["trusted_proxy_headers"],
                                            clear_untrusted=True)


def serve(create, host: str, port: int, threads: int = 16, config=None) -> int:
    """Serve the app that create() builds until a signal; return the exit status.

    `config` (from geekai.config.check) sets the proxy and body-size options of waitress.
    """
    from waitress.server import create_server

    from .config import DEFAULTS

    warming = WarmingApp(threads)
    # Live pages' event streams hold threads (at most STREAM_MAX_CLIENTS); the lookahead lets
    # waitress notice a closed page, so that its stream ends and frees the thread.
    server = create_server(warming, host=host, port=port, threads=threads, ident="geekai",
                           channel_request_lookahead=1, **waitress_options(config or DEFAULTS))
    bound_host, bound_port = server.getsockname()[:2]
    print(f"geekai: serving on http://{bound_host}:{bound_port}", file=sys.stderr, flush=True)
    stop = functools.partial(_stop_serving, warming)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=warming.build, args=(create,), name="geekai-start", daemon=True).start()
    try:
        server.run()
    finally:
        finished = _shutdown(warming)
    if warming.failed is not None:
        return 1
    if not finished:
        # The attempt thread is a daemon blocked in a socket read; the state is already
        # recorded as stopped, so nothing is lost by not waiting for it.
        os._exit(0)
    return 0


def _shutdown(warming: WarmingApp) -> bool:
    """Stop the bot; True when nothing is left in flight."""
    warming.ready.wait(WARM_UP_WAIT)
    if warming.runtime is None:
        return True
    finished = warming.runtime.shutdown(grace=warming.app.config["BOT_STOP_GRACE_SECONDS"])
    logger.info("geekai stopped%s", "" if finished else " (a WeChat request was still in flight)")
    logging.shutdown()
    return finished
