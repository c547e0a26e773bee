"""Alembic's environment for geekai: the app's engine and metadata, one transaction per step."""
from __future__ import annotations

from alembic import context
from flask import current_app

config = context.config
migrate = current_app.extensions["migrate"]


def run_offline() -> None:
    url = migrate.db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=migrate.db.metadata, literal_binds=True,
                      **migrate.configure_args)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    # geekai/schema.py passes the connection it holds the upgrade lock on; `flask db` does not.
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with migrate.db.engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    # One transaction per step: a failing step leaves the database at the last step that worked.
    context.configure(connection=connection, target_metadata=migrate.db.metadata,
                      transaction_per_migration=True, **migrate.configure_args)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
