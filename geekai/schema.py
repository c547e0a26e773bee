"""The database schema: Alembic migrations (geekai/migrations) brought to the head before use.

Every table change is a migration. A new, empty database gets the models' tables at once, stamped
with the newest revision (what the migrations would give, checked by tests/test_schema.py); any
other is migrated step by step. create_app() calls upgrade(), so `python app.py`, gunicorn's
workers and the tests all meet an up-to-date schema before anything reads it; several processes
starting at once take turns (a lock per database) and the later ones find nothing to do.
`flask --app app db ...` (Flask-Migrate) works too, for upgrades by hand, history and downgrades.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os

import click
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import make_url

from .db import db

logger = logging.getLogger(__name__)

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# The newest revision in geekai/migrations/versions (tests/test_schema.py checks it is Alembic's
# head): a database already there is recognised with one query, without importing Alembic.
HEAD = "0007"
# pg_advisory_lock key of the upgrade: any constant shared by every geekai process.
_PG_LOCK = 0x6765656B6169


class SchemaError(Exception):
    """The database cannot be brought to the current schema; the message names the step."""


def init_app(app) -> None:
    """Register `flask db`: Flask-Migrate's commands, with Alembic imported only when one runs."""
    app.cli.add_command(click.Command(
        "db", callback=_run_migrate_command, help="Database migrations (Flask-Migrate): flask db --help.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}))


def _run_migrate_command() -> None:
    # Alembic and Flask-Migrate take longer to import than Flask itself: a serving process whose
    # schema is current never needs them, so `flask db` loads them only when it runs.
    from flask.cli import ScriptInfo
    from flask_migrate.cli import db as migrate_commands

    ctx = click.get_current_context()
    _migrate(ctx.ensure_object(ScriptInfo).load_app())
    migrate_commands.main(ctx.args, prog_name=ctx.command_path, obj=ctx.obj, standalone_mode=False)


def _migrate(app) -> None:
    """Flask-Migrate's settings on the app, which env.py reads."""
    from flask_migrate import Migrate

    if "migrate" not in app.extensions:
        Migrate(app, db, directory=MIGRATIONS, render_as_batch=True, compare_type=True)


def current_revision(connection) -> str | None:
    """The revision a database is at; None for a new database or one made before migrations."""
    try:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:
        connection.rollback()
        return None


def upgrade(app, every_step: bool = False) -> list[str]:
    """Apply the migrations the database lacks, one step at a time; return the steps applied (a new
    database: only HEAD, its tables made at once, unless `every_step`).

    Raises SchemaError naming the step that failed; the steps before it stay applied.
    """
    with app.app_context():
        engine = db.engine
        with engine.connect() as connection:
            if current_revision(connection) == HEAD:
                return []
        with _upgrade_lock(app, engine) as connection:
            if not every_step and _is_empty(connection):
                return _create_new(connection)
            return _apply_missing_steps(app, connection)


def _is_empty(connection) -> bool:
    """A database without a single table: a new one."""
    empty = not inspect(connection).get_table_names()
    connection.rollback()
    return empty


def _create_new(connection) -> list[str]:
    """A new database: the models' tables made at once and stamped HEAD, instead of every migration
    one by one (which imports Alembic, the slowest part of a first start). tests/test_schema.py
    checks that both give the same schema."""
    logger.info("new database: tables created at revision %s", HEAD)
    with connection.begin():
        db.metadata.create_all(connection)
        versions = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                         PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
        versions.create(connection)
        connection.execute(versions.insert().values(version_num=HEAD))
    return [HEAD]


def _apply_missing_steps(app, connection) -> list[str]:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    _migrate(app)

    config = Config(os.path.join(MIGRATIONS, "alembic.ini"))
    config.attributes["connection"] = connection
    script = ScriptDirectory.from_config(config)
    start = current_revision(connection)
    connection.commit()
    steps = list(reversed(list(script.walk_revisions(base="base", head="heads"))))
    pending = steps if start is None else steps[[step.revision for step in steps].index(start) + 1:]
    applied = []
    for step in pending:
        title = step.doc.splitlines()[0].rstrip(".")
        logger.info("database upgrade: step %s (%s)", step.revision, title)
        try:
            command.upgrade(config, step.revision)
        except Exception as exc:
            raise SchemaError(f"database upgrade step {step.revision} ({title}) failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        applied.append(step.revision)
    return applied


@contextlib.contextmanager
def _upgrade_lock(app, engine):
    """A connection that alone may upgrade the database, until the block ends."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as connection:
        if url.get_backend_name() == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK})
                connection.commit()
        elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = _sqlite_path(app, url.database) + ".upgrade-lock"
            with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600)) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield connection
        else:
            yield connection


def _sqlite_path(app, database: str) -> str:
    return database if os.path.isabs(database) else os.path.join(app.instance_path, database)
