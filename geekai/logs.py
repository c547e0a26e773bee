"""Logging for the entry points (app.py, geekai.wsgi): one line per record, libraries kept quiet."""
from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure() -> None:
    """INFO and up to stderr, unless the host (gunicorn, a test) set logging up already; no
    credential in any line (geekai/redaction.py)."""
    from .redaction import install_log_filter

    logging.basicConfig(level=logging.INFO, format=FORMAT)
    install_log_filter()
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
